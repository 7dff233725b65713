//! Differential testing of the JIT against the interpreter: a generator of random well-formed,
//! terminating programs with random memory, and the oracle that runs both engines and compares them.
//!
//! Generated programs keep `r9` as the base of a [`BUF_LEN`]-byte buffer (the context) and touch its
//! first [`DATA_LEN`] bytes and the stack with every load, store and atomic of the ISA; ALU operations
//! draw their operands from corner values (0, -1, `INT_MIN`, shift counts past the width) so division
//! and modulo by zero and `INT_MIN / -1` come up often. Jumps go forward only; loops are counted with
//! a register the loop body leaves alone; local calls go to functions placed after the main exit.
//! A few accesses are deliberately out of bounds, so errors are compared too. The epilogue stores
//! `r0`-`r8` after the data area, so comparing memory compares every register at exit.
//!
//! The generator reads its choices from a [`Source`]: a seeded PRNG for tests, fuzzer bytes for
//! `cargo fuzz`.

use moat_exec::{HelperError, HelperRegistry, Linked, NoMaps, RunError};
use moat_interp::Prepared;
use moat_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Program, Reg, Size,
    SxBits, Width,
};
use moat_jit::{CodeOptions, Confinement, JitProgram, ProvenAccesses};
use std::sync::Arc;

/// Bytes of the data area programs load from and store to.
pub const DATA_LEN: usize = 256;
/// Bytes of the buffer: the data area, then `r0`-`r8` stored by the epilogue.
pub const BUF_LEN: usize = DATA_LEN + 9 * 8;
/// The helper id generated programs call (`a1 ^ a2 * 3 + a5`, and reads 8 bytes at `a3`).
pub const FUZZ_HELPER: u32 = 0x7777;

/// Where the generator's choices come from.
pub trait Source {
    /// A number below `n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64;
    /// A raw 64-bit value.
    fn word(&mut self) -> u64;
}

/// A SplitMix64 generator.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Source for Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.word() % n.max(1)
    }
    fn word(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Choices read from fuzzer bytes; zeros once they run out.
#[derive(Debug)]
pub struct Bytes<'a>(pub &'a [u8]);

impl Source for Bytes<'_> {
    fn below(&mut self, n: u64) -> u64 {
        self.word() % n.max(1)
    }
    fn word(&mut self) -> u64 {
        let mut b = [0u8; 8];
        let take = self.0.len().min(8);
        b[..take].copy_from_slice(&self.0[..take]);
        self.0 = &self.0[take..];
        u64::from_le_bytes(b)
    }
}

/// A generated test case: the program's bytecode and the buffer it runs on.
#[derive(Debug, Clone)]
pub struct Case {
    /// The program.
    pub bytecode: Vec<u8>,
    /// The initial buffer (`r1`).
    pub mem: Vec<u8>,
}

fn reg(n: u8) -> Reg {
    Reg::new(n).unwrap_or(Reg::R0)
}

const INTERESTING: [i64; 12] = [
    0,
    1,
    -1,
    2,
    7,
    63,
    64,
    i32::MIN as i64,
    i32::MAX as i64,
    i64::MIN,
    i64::MAX,
    0x8000_0000,
];

fn value(s: &mut dyn Source) -> u64 {
    match s.below(3) {
        0 => INTERESTING[s.below(INTERESTING.len() as u64) as usize] as u64,
        1 => s.below(300),
        _ => s.word(),
    }
}

fn imm(s: &mut dyn Source) -> i32 {
    match s.below(3) {
        0 => INTERESTING[s.below(INTERESTING.len() as u64) as usize] as i32,
        1 => s.below(80) as i32 - 8,
        _ => s.word() as i32,
    }
}

fn size(s: &mut dyn Source) -> Size {
    [Size::B, Size::H, Size::W, Size::DW][s.below(4) as usize]
}

/// An instruction or a forward jump over the next `skip` items.
enum Item {
    Insn(Insn),
    JumpOver {
        width: Width,
        cond: JmpCond,
        dst: Reg,
        src: Operand,
        skip: usize,
    },
    /// A backward jump to `back` items earlier (loop latch).
    LoopLatch {
        counter: Reg,
        back: usize,
    },
    /// A call to function number `f`.
    Call(usize),
}

struct Gen<'a> {
    s: &'a mut dyn Source,
    items: Vec<Item>,
    functions: usize,
}

impl Gen<'_> {
    /// A random register among r0-r8 other than `avoid`.
    fn dst(&mut self, avoid: Option<u8>) -> Reg {
        let r = self.s.below(9) as u8;
        if Some(r) == avoid {
            reg((r + 1) % 9)
        } else {
            reg(r)
        }
    }

    fn operand(&mut self) -> Operand {
        if self.s.below(2) == 0 {
            Operand::Reg(reg(self.s.below(9) as u8))
        } else {
            Operand::Imm(imm(self.s))
        }
    }

    fn width(&mut self) -> Width {
        if self.s.below(2) == 0 {
            Width::W64
        } else {
            Width::W32
        }
    }

    fn push(&mut self, insn: Insn) {
        self.items.push(Item::Insn(insn));
    }

    /// One random straight-line instruction (no control flow) not writing `avoid`.
    fn simple(&mut self, avoid: Option<u8>) {
        let dst = self.dst(avoid);
        match self.s.below(20) {
            0..=6 => {
                let ops = [
                    AluOp::Add,
                    AluOp::Sub,
                    AluOp::Mul,
                    AluOp::Div,
                    AluOp::SDiv,
                    AluOp::Or,
                    AluOp::And,
                    AluOp::Lsh,
                    AluOp::Rsh,
                    AluOp::Mod,
                    AluOp::SMod,
                    AluOp::Xor,
                    AluOp::Mov,
                    AluOp::Arsh,
                ];
                let op = ops[self.s.below(ops.len() as u64) as usize];
                let width = self.width();
                let src = self.operand();
                self.push(Insn::Alu {
                    width,
                    op,
                    dst,
                    src,
                });
            }
            7 => {
                let bits = [SxBits::B8, SxBits::B16, SxBits::B32][self.s.below(3) as usize];
                let width = if bits == SxBits::B32 {
                    Width::W64
                } else {
                    self.width()
                };
                let src = reg(self.s.below(9) as u8);
                self.push(Insn::Alu {
                    width,
                    op: AluOp::MovSx(bits),
                    dst,
                    src: Operand::Reg(src),
                });
            }
            8 => {
                let width = self.width();
                self.push(Insn::Neg { width, dst });
            }
            9 => {
                let kind = [Endian::ToLe, Endian::ToBe, Endian::Swap][self.s.below(3) as usize];
                let bits = [16, 32, 64][self.s.below(3) as usize];
                self.push(Insn::Endian { kind, bits, dst });
            }
            10 => {
                let v = value(self.s);
                self.push(Insn::LoadImm64 {
                    dst,
                    kind: LddwKind::Imm,
                    imm: v as u32 as i32,
                    next_imm: (v >> 32) as u32 as i32,
                });
            }
            11..=13 => {
                let size = size(self.s);
                let (base, off) = self.place(size);
                let signed = size != Size::DW && self.s.below(3) == 0;
                self.push(Insn::Load {
                    size,
                    signed,
                    dst,
                    src: base,
                    off,
                });
            }
            14..=16 => {
                let size = size(self.s);
                let (base, off) = self.place(size);
                let src = if self.s.below(2) == 0 {
                    Operand::Reg(reg(self.s.below(9) as u8))
                } else {
                    Operand::Imm(imm(self.s))
                };
                self.push(Insn::Store {
                    size,
                    dst: base,
                    off,
                    src,
                });
            }
            17 => {
                let size = if self.s.below(2) == 0 {
                    Size::W
                } else {
                    Size::DW
                };
                let (base, mut off) = self.place(size);
                if self.s.below(8) != 0 {
                    off -= off.rem_euclid(size.bytes() as i16);
                }
                let ops = [
                    AtomicOp::Add { fetch: false },
                    AtomicOp::Or { fetch: false },
                    AtomicOp::And { fetch: false },
                    AtomicOp::Xor { fetch: false },
                    AtomicOp::Add { fetch: true },
                    AtomicOp::Or { fetch: true },
                    AtomicOp::And { fetch: true },
                    AtomicOp::Xor { fetch: true },
                    AtomicOp::Xchg,
                    AtomicOp::CmpXchg,
                ];
                let op = ops[self.s.below(ops.len() as u64) as usize];
                // Fetching atomics write their source register; keep it off the loop counter.
                let src = self.dst(avoid);
                self.push(Insn::Atomic {
                    size,
                    op,
                    dst: base,
                    off,
                    src,
                });
                if op == AtomicOp::CmpXchg && avoid == Some(0) {
                    self.items.pop();
                }
            }
            18 => {
                // A pointer computed at run time into the data area: exercises the checks' slow paths.
                let p = self.dst(avoid);
                let idx = reg(self.s.below(9) as u8);
                self.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: p,
                    src: Operand::Reg(idx),
                });
                let mask = if self.s.below(10) == 0 { 0x1ff } else { 0xf8 };
                self.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::And,
                    dst: p,
                    src: Operand::Imm(mask),
                });
                let base = if self.s.below(3) == 0 {
                    Reg::R10
                } else {
                    reg(9)
                };
                if base == Reg::R10 {
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Sub,
                        dst: p,
                        src: Operand::Imm(0x100),
                    });
                }
                self.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Add,
                    dst: p,
                    src: Operand::Reg(base),
                });
                let size = size(self.s);
                let d = self.dst(avoid);
                if self.s.below(2) == 0 {
                    self.push(Insn::Load {
                        size,
                        signed: false,
                        dst: d,
                        src: p,
                        off: 0,
                    });
                } else {
                    // Never store the pointer itself: stack addresses differ between engines.
                    let src = if d == p {
                        Operand::Imm(imm(self.s))
                    } else {
                        Operand::Reg(d)
                    };
                    self.push(Insn::Store {
                        size,
                        dst: p,
                        off: 0,
                        src,
                    });
                }
                // Stack addresses differ between engines: never let one reach memory or r0.
                self.push(Insn::Alu {
                    width: Width::W64,
                    op: AluOp::Mov,
                    dst: p,
                    src: Operand::Imm(0),
                });
            }
            _ => {
                // Legacy packet loads clobber r1-r5: only where none of them is a loop counter.
                if avoid.is_some_and(|a| (1..=5).contains(&a)) {
                    return;
                }
                let size = [Size::B, Size::H, Size::W][self.s.below(3) as usize];
                let off = self.s.below(DATA_LEN as u64 + 8) as i32;
                if self.s.below(2) == 0 {
                    self.push(Insn::LoadAbs { size, imm: off });
                } else {
                    let src = reg(6 + self.s.below(3) as u8);
                    self.push(Insn::LoadInd {
                        size,
                        src,
                        imm: off,
                    });
                }
                if avoid == Some(0) {
                    self.items.pop();
                } else {
                    self.reinit_args();
                }
            }
        }
    }

    /// A base register and offset for an access of `size`: mostly in the data area or the current
    /// stack frame, rarely out of bounds.
    fn place(&mut self, size: Size) -> (Reg, i16) {
        let n = size.bytes() as i64;
        let oob = self.s.below(60) == 0;
        if self.s.below(3) == 0 {
            let off = if oob {
                self.s.below(16) as i64 + 1 - n + 8
            } else {
                -(self.s.below(512 - n as u64 + 1) as i64) - n
            };
            (Reg::R10, off as i16)
        } else {
            let off = if oob {
                DATA_LEN as i64 + 9 * 8 - n + 1 + self.s.below(8) as i64
            } else {
                self.s.below(DATA_LEN as u64 - n as u64 + 1) as i64
            };
            (reg(9), off as i16)
        }
    }

    fn reinit_args(&mut self) {
        for r in 1..=5 {
            let v = imm(self.s);
            self.push(Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: reg(r),
                src: Operand::Imm(v),
            });
        }
    }

    fn body(&mut self, len: usize, depth: usize) {
        for _ in 0..len {
            match self.s.below(16) {
                0 | 1 => {
                    // if (cond) skip the next few instructions.
                    let width = self.width();
                    let conds = [
                        JmpCond::Eq,
                        JmpCond::Gt,
                        JmpCond::Ge,
                        JmpCond::Set,
                        JmpCond::Ne,
                        JmpCond::Sgt,
                        JmpCond::Sge,
                        JmpCond::Lt,
                        JmpCond::Le,
                        JmpCond::Slt,
                        JmpCond::Sle,
                    ];
                    let cond = conds[self.s.below(conds.len() as u64) as usize];
                    let dst = reg(self.s.below(9) as u8);
                    let src = self.operand();
                    let at = self.items.len();
                    self.items.push(Item::JumpOver {
                        width,
                        cond,
                        dst,
                        src,
                        skip: 0,
                    });
                    let n = 1 + self.s.below(4) as usize;
                    for _ in 0..n {
                        self.simple(None);
                    }
                    let skip = self.items.len() - at - 1;
                    if let Some(Item::JumpOver { skip: s, .. }) = self.items.get_mut(at) {
                        *s = skip;
                    }
                }
                2 if depth == 0 => {
                    // A counted loop: counter = 1..6; body; counter -= 1; if counter != 0 goto body.
                    let counter = self.dst(None);
                    let count = 1 + self.s.below(6) as i32;
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Mov,
                        dst: counter,
                        src: Operand::Imm(count),
                    });
                    let start = self.items.len();
                    let n = 1 + self.s.below(6) as usize;
                    for _ in 0..n {
                        self.simple(Some(counter.num()));
                    }
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Sub,
                        dst: counter,
                        src: Operand::Imm(1),
                    });
                    let back = self.items.len() - start;
                    self.items.push(Item::LoopLatch { counter, back });
                }
                3 if depth == 0 && self.functions > 0 => {
                    let f = self.s.below(self.functions as u64) as usize;
                    // The callee finds the buffer in r5.
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Mov,
                        dst: reg(5),
                        src: Operand::Reg(reg(9)),
                    });
                    self.items.push(Item::Call(f));
                    self.reinit_args();
                }
                4 if depth == 0 => {
                    // The test helper: reads 8 bytes of the data area at a3.
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Mov,
                        dst: reg(3),
                        src: Operand::Reg(reg(9)),
                    });
                    let at = self.s.below(DATA_LEN as u64 - 7) as i32;
                    self.push(Insn::Alu {
                        width: Width::W64,
                        op: AluOp::Add,
                        dst: reg(3),
                        src: Operand::Imm(at),
                    });
                    self.push(Insn::Call(CallTarget::Helper(FUZZ_HELPER as i32)));
                    self.reinit_args();
                }
                _ => self.simple(None),
            }
        }
    }
}

/// Lowers items to instructions, resolving jumps; `calls[f]` is the item index of function `f`.
fn lower(items: &[Item], function_starts: &[usize]) -> Vec<Insn> {
    // Slot of each item (lddw takes two).
    let mut slot = Vec::with_capacity(items.len() + 1);
    let mut at = 0usize;
    for item in items {
        slot.push(at);
        at += match item {
            Item::Insn(i) => i.slots(),
            _ => 1,
        };
    }
    slot.push(at);
    let rel = |from: usize, to: usize| slot[to] as i64 - slot[from] as i64 - 1;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match *item {
            Item::Insn(insn) => insn,
            Item::JumpOver {
                width,
                cond,
                dst,
                src,
                skip,
            } => Insn::Jmp {
                width,
                cond,
                dst,
                src,
                off: rel(i, i + 1 + skip) as i16,
            },
            Item::LoopLatch { counter, back } => Insn::Jmp {
                width: Width::W64,
                cond: JmpCond::Ne,
                dst: counter,
                src: Operand::Imm(0),
                off: rel(i, i - back) as i16,
            },
            Item::Call(f) => Insn::Call(CallTarget::Local(rel(
                i,
                function_starts.get(f).copied().unwrap_or(0),
            ) as i32)),
        })
        .collect()
}

/// Generates a case from `s`.
pub fn generate(s: &mut dyn Source) -> Case {
    let mut mem = vec![0u8; BUF_LEN];
    for chunk in mem[..DATA_LEN].chunks_mut(8) {
        let v = s.word().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    let functions = s.below(3) as usize;
    let len = 4 + s.below(48) as usize;
    let mut g = Gen {
        s,
        items: Vec::new(),
        functions,
    };
    // r9 = buffer; r0, r2-r8 random.
    g.push(Insn::Alu {
        width: Width::W64,
        op: AluOp::Mov,
        dst: reg(9),
        src: Operand::Reg(Reg::R1),
    });
    for r in [0u8, 1, 2, 3, 4, 5, 6, 7, 8] {
        let v = value(g.s);
        g.push(Insn::LoadImm64 {
            dst: reg(r),
            kind: LddwKind::Imm,
            imm: v as u32 as i32,
            next_imm: (v >> 32) as u32 as i32,
        });
    }
    g.body(len, 0);
    for r in 0..=8u8 {
        g.push(Insn::Store {
            size: Size::DW,
            dst: reg(9),
            off: (DATA_LEN + 8 * r as usize) as i16,
            src: Operand::Reg(reg(r)),
        });
    }
    g.push(Insn::Exit);
    let mut starts = Vec::new();
    for _ in 0..functions {
        starts.push(g.items.len());
        // A function: the buffer from r5 into r9, r0 and r6-r8 from the arguments, a short body
        // (clobbering r6-r9 is fine: calls restore the caller's).
        g.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: reg(9),
            src: Operand::Reg(reg(5)),
        });
        g.push(Insn::Alu {
            width: Width::W64,
            op: AluOp::Mov,
            dst: Reg::R0,
            src: Operand::Reg(Reg::R1),
        });
        for r in 6..=8u8 {
            g.push(Insn::Alu {
                width: Width::W64,
                op: AluOp::Mov,
                dst: reg(r),
                src: Operand::Reg(reg(r - 4)),
            });
        }
        let n = 1 + g.s.below(8) as usize;
        g.body(n, 1);
        g.push(Insn::Exit);
    }
    let insns = lower(&g.items, &starts);
    Case {
        bytecode: moat_isa::encode(&insns),
        mem,
    }
}

/// The registry generated programs use: the test helper [`FUZZ_HELPER`].
pub fn registry() -> HelperRegistry {
    let mut r = HelperRegistry::new();
    r.register(FUZZ_HELPER, "fuzz_helper", |ctx, a| {
        let bytes = ctx.read(3, a[2], 8)?;
        let word = u64::from_le_bytes(
            bytes
                .try_into()
                .map_err(|_| HelperError::Failed("short".into()))?,
        );
        Ok((a[0] ^ a[1].wrapping_mul(3)).wrapping_add(a[4]) ^ word)
    });
    r
}

/// What one engine did with a case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `r0` or the error.
    pub result: Result<u64, RunError>,
    /// The buffer afterwards (includes `r0`-`r8` when the program got to its epilogue).
    pub mem: Vec<u8>,
}

/// Why a case could not be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// The generated bytecode is not a well-formed program (a generator limitation).
    Malformed(String),
}

/// Runs `case` on the interpreter and the JIT, in the same buffer (so pointers into it compare
/// equal); `Ok((interp, jit))`. Error addresses outside the buffer (the engines' stacks live at
/// different places) are reported as 0.
pub fn run_both(case: &Case) -> Result<(Outcome, Outcome), Skip> {
    let program = Program::new(&case.bytecode).map_err(|e| Skip::Malformed(e.to_string()))?;
    let registry = registry();
    let linked = Arc::new(
        Linked::new(&program, &registry, &NoMaps).map_err(|e| Skip::Malformed(e.to_string()))?,
    );
    let prepared = Prepared::lower(linked.clone()).map_err(|e| Skip::Malformed(e.to_string()))?;
    let jit = JitProgram::new(
        linked,
        Arc::new(prepared.clone()),
        &ProvenAccesses::none(),
        &CodeOptions::new(Confinement::Unconfined),
    )
    .map_err(|e| Skip::Malformed(e.to_string()))?;
    let mut buf = case.mem.clone();
    let base = buf.as_ptr() as u64;
    let r1 = normalize(prepared.run(&mut buf), base);
    let m1 = buf.clone();
    buf.copy_from_slice(&case.mem);
    let r2 = normalize(jit.run(&mut buf), base);
    let buf2 = buf;
    Ok((
        Outcome {
            result: r1,
            mem: m1,
        },
        Outcome {
            result: r2,
            mem: buf2,
        },
    ))
}

fn normalize(r: Result<u64, RunError>, base: u64) -> Result<u64, RunError> {
    use moat_exec::RunErrorKind;
    // Addresses in the buffer compare by offset; any other address by nothing (the engines'
    // stacks lie elsewhere, so the region an address is nearest may differ too).
    let fix = |addr: &mut u64, at: &mut moat_exec::Locus| {
        if *addr >= base && *addr < base + BUF_LEN as u64 + 16 {
            *addr = addr.wrapping_sub(base);
        } else {
            *addr = 0;
            *at = moat_exec::Locus::Elsewhere;
        }
    };
    r.map_err(|mut e| {
        match &mut e.kind {
            RunErrorKind::OutOfBounds { addr, at, .. }
            | RunErrorKind::BadAtomic { addr, at, .. } => fix(addr, at),
            _ => {}
        }
        e
    })
}

/// The oracle: generates a case from `s`, runs both engines and returns a description of any
/// difference (`Ok(true)` if they agree, `Ok(false)` if the case was skipped).
pub fn check(s: &mut dyn Source) -> Result<bool, String> {
    let case = generate(s);
    match run_both(&case) {
        Err(Skip::Malformed(_)) => Ok(false),
        Ok((a, b)) if a == b => Ok(true),
        Ok((a, b)) => {
            let program = Program::new(&case.bytecode).ok();
            let text = program
                .map(|p| {
                    p.insns()
                        .iter()
                        .map(|(pc, i)| format!("{pc:4}: {}", moat_isa::disasm_one(i)))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .unwrap_or_default();
            let diff: Vec<String> = a
                .mem
                .chunks(8)
                .zip(b.mem.chunks(8))
                .enumerate()
                .filter(|(_, (x, y))| x != y)
                .map(|(i, (x, y))| format!("@{}: {x:02x?} vs {y:02x?}", i * 8))
                .collect();
            Err(format!(
                "interp {:x?}\njit    {:x?}\nmem differs: {}\n{text}",
                a.result,
                b.result,
                diff.join("\n")
            ))
        }
    }
}
