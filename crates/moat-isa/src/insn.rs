//! Typed eBPF instructions and their exact binary encoding.
//!
//! [`Insn`] is the only form in which the rest of moat sees an instruction. [`decode`] turns bytecode into
//! instructions and refuses every encoding RFC 9669 does not define, including non-zero reserved fields;
//! [`encode`] is its inverse (`encode(decode(b)) == b` for every accepted `b`).

use crate::opcode::*;
use std::fmt;
use thiserror::Error;

/// Size of one instruction slot in bytes.
pub const INSN_SIZE: usize = 8;

/// A register number, `r0` to `r10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(u8);

impl Reg {
    /// Return value and exit code.
    pub const R0: Reg = Reg(0);
    /// First argument; at entry, the context.
    pub const R1: Reg = Reg(1);
    /// Second argument; at entry (generic buffer context), the input length.
    pub const R2: Reg = Reg(2);
    /// Third argument.
    pub const R3: Reg = Reg(3);
    /// Read-only frame pointer.
    pub const R10: Reg = Reg(10);

    /// The register numbered `n`, if `n <= 10`.
    pub fn new(n: u8) -> Option<Reg> {
        (n <= 10).then_some(Reg(n))
    }

    /// The register's number.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The register's number as the 4-bit encoding field.
    pub fn num(self) -> u8 {
        self.0
    }
}

impl fmt::Display for Reg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%r{}", self.0)
    }
}

/// The width an ALU or jump instruction works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Width {
    /// 32-bit: operands are the low halves; ALU results are zero-extended.
    W32,
    /// 64-bit.
    W64,
}

/// A register or immediate operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operand {
    /// The source register.
    Reg(Reg),
    /// The 32-bit immediate (sign-extended to 64 bits where used as 64-bit).
    Imm(i32),
}

/// A binary ALU operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AluOp {
    /// `dst += src`.
    Add,
    /// `dst -= src`.
    Sub,
    /// `dst *= src`.
    Mul,
    /// Unsigned `dst /= src`; division by zero gives 0.
    Div,
    /// Signed division; division by zero gives 0.
    SDiv,
    /// `dst |= src`.
    Or,
    /// `dst &= src`.
    And,
    /// `dst <<= src` (shift masked to the width).
    Lsh,
    /// Logical `dst >>= src` (shift masked to the width).
    Rsh,
    /// Unsigned `dst %= src`; modulo by zero leaves `dst` unchanged.
    Mod,
    /// Signed modulo; modulo by zero leaves `dst` unchanged.
    SMod,
    /// `dst ^= src`.
    Xor,
    /// `dst = src`.
    Mov,
    /// `dst = sign_extend(src, bits)`; register source only.
    MovSx(SxBits),
    /// Arithmetic `dst >>= src` (shift masked to the width).
    Arsh,
}

/// Source widths a sign-extending move can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SxBits {
    /// From 8 bits.
    B8,
    /// From 16 bits.
    B16,
    /// From 32 bits (64-bit destination only).
    B32,
}

impl SxBits {
    /// The number of source bits, as the `off` field encodes it.
    fn bits_u8(self) -> u8 {
        match self {
            SxBits::B8 => 8,
            SxBits::B16 => 16,
            SxBits::B32 => 32,
        }
    }

    /// The number of source bits.
    pub fn bits(self) -> u32 {
        match self {
            SxBits::B8 => 8,
            SxBits::B16 => 16,
            SxBits::B32 => 32,
        }
    }
}

/// How a byte-swap instruction reorders bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endian {
    /// Convert to little endian (`le`): truncation only, on this little-endian host.
    ToLe,
    /// Convert to big endian (`be`).
    ToBe,
    /// Unconditional swap (`bswap`, ALU64 class).
    Swap,
}

/// A memory access size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Size {
    /// 1 byte.
    B,
    /// 2 bytes.
    H,
    /// 4 bytes.
    W,
    /// 8 bytes.
    DW,
}

impl Size {
    /// The access size in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Size::B => 1,
            Size::H => 2,
            Size::W => 4,
            Size::DW => 8,
        }
    }

    fn from_code(code: u8) -> Size {
        match code & 0x18 {
            SIZE_W => Size::W,
            SIZE_H => Size::H,
            SIZE_B => Size::B,
            _ => Size::DW,
        }
    }

    fn code(self) -> u8 {
        match self {
            Size::W => SIZE_W,
            Size::H => SIZE_H,
            Size::B => SIZE_B,
            Size::DW => SIZE_DW,
        }
    }

    /// The mnemonic suffix (`b`, `h`, `w`, `dw`).
    pub fn suffix(self) -> &'static str {
        match self {
            Size::B => "b",
            Size::H => "h",
            Size::W => "w",
            Size::DW => "dw",
        }
    }
}

/// A conditional jump's comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JmpCond {
    /// `==`.
    Eq,
    /// Unsigned `>`.
    Gt,
    /// Unsigned `>=`.
    Ge,
    /// `dst & src != 0`.
    Set,
    /// `!=`.
    Ne,
    /// Signed `>`.
    Sgt,
    /// Signed `>=`.
    Sge,
    /// Unsigned `<`.
    Lt,
    /// Unsigned `<=`.
    Le,
    /// Signed `<`.
    Slt,
    /// Signed `<=`.
    Sle,
}

/// A read-modify-write operation of an atomic instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AtomicOp {
    /// Add; with `fetch`, the old value goes to `src`.
    Add {
        /// Also return the old value in `src`.
        fetch: bool,
    },
    /// Or.
    Or {
        /// Also return the old value in `src`.
        fetch: bool,
    },
    /// And.
    And {
        /// Also return the old value in `src`.
        fetch: bool,
    },
    /// Xor.
    Xor {
        /// Also return the old value in `src`.
        fetch: bool,
    },
    /// Exchange: the old value goes to `src`.
    Xchg,
    /// Compare with `r0` and exchange if equal: the old value goes to `r0`.
    CmpXchg,
}

/// What the 64-bit immediate of `lddw` means (the `src` field, RFC 9669 §5.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LddwKind {
    /// `dst = imm64`.
    Imm,
    /// `dst = map_by_fd(imm)`.
    MapFd,
    /// `dst = map_val(map_by_fd(imm)) + next_imm`.
    MapValue,
    /// `dst = var_addr(imm)`.
    VarAddr,
    /// `dst = code_addr(imm)`: a local function, PC-relative.
    Code,
    /// `dst = map_by_idx(imm)`.
    MapIdx,
    /// `dst = map_val(map_by_idx(imm)) + next_imm`.
    MapIdxValue,
}

impl LddwKind {
    fn from_src(src: u8) -> Option<LddwKind> {
        Some(match src {
            PSEUDO_NONE => LddwKind::Imm,
            PSEUDO_MAP_FD => LddwKind::MapFd,
            PSEUDO_MAP_VALUE => LddwKind::MapValue,
            PSEUDO_BTF_ID => LddwKind::VarAddr,
            PSEUDO_FUNC => LddwKind::Code,
            PSEUDO_MAP_IDX => LddwKind::MapIdx,
            PSEUDO_MAP_IDX_VALUE => LddwKind::MapIdxValue,
            _ => return None,
        })
    }

    fn src(self) -> u8 {
        match self {
            LddwKind::Imm => PSEUDO_NONE,
            LddwKind::MapFd => PSEUDO_MAP_FD,
            LddwKind::MapValue => PSEUDO_MAP_VALUE,
            LddwKind::VarAddr => PSEUDO_BTF_ID,
            LddwKind::Code => PSEUDO_FUNC,
            LddwKind::MapIdx => PSEUDO_MAP_IDX,
            LddwKind::MapIdxValue => PSEUDO_MAP_IDX_VALUE,
        }
    }
}

/// What a `call` instruction calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallTarget {
    /// A helper function by its numeric id.
    Helper(i32),
    /// A program-local function: the target is `pc + 1 + offset`.
    Local(i32),
    /// A kernel function by BTF id.
    Kfunc(i32),
}

/// One typed eBPF instruction. `lddw` is one `Insn` that occupies two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Insn {
    /// A binary ALU operation.
    Alu {
        /// 32- or 64-bit.
        width: Width,
        /// The operation.
        op: AluOp,
        /// Destination (and first operand).
        dst: Reg,
        /// Second operand.
        src: Operand,
    },
    /// `dst = -dst`.
    Neg {
        /// 32- or 64-bit.
        width: Width,
        /// Operand and destination.
        dst: Reg,
    },
    /// Byte order conversion of the low `bits` bits of `dst`.
    Endian {
        /// Target order, or unconditional swap.
        kind: Endian,
        /// 16, 32 or 64.
        bits: u8,
        /// Operand and destination.
        dst: Reg,
    },
    /// `dst = *(size *)(src + off)`, zero- or sign-extended.
    Load {
        /// Access size.
        size: Size,
        /// Sign-extend (`ldxs*`) rather than zero-extend.
        signed: bool,
        /// Destination register.
        dst: Reg,
        /// Base address register.
        src: Reg,
        /// Offset from the base.
        off: i16,
    },
    /// `*(size *)(dst + off) = src`.
    Store {
        /// Access size.
        size: Size,
        /// Base address register.
        dst: Reg,
        /// Offset from the base.
        off: i16,
        /// Stored value: register (`stx`) or immediate (`st`).
        src: Operand,
    },
    /// An atomic read-modify-write of `*(size *)(dst + off)` with `src`.
    Atomic {
        /// `W` or `DW`.
        size: Size,
        /// The operation.
        op: AtomicOp,
        /// Base address register.
        dst: Reg,
        /// Offset from the base.
        off: i16,
        /// Operand register (receives the old value when fetching).
        src: Reg,
    },
    /// `lddw`: a 64-bit immediate or a pseudo source; occupies two slots.
    LoadImm64 {
        /// Destination register.
        dst: Reg,
        /// What the immediate means.
        kind: LddwKind,
        /// First slot's `imm`.
        imm: i32,
        /// Second slot's `imm`.
        next_imm: i32,
    },
    /// Legacy packet load `r0 = ntoh(*(size *)(pkt + imm))`.
    LoadAbs {
        /// `B`, `H` or `W`.
        size: Size,
        /// Packet offset.
        imm: i32,
    },
    /// Legacy packet load `r0 = ntoh(*(size *)(pkt + src + imm))`.
    LoadInd {
        /// `B`, `H` or `W`.
        size: Size,
        /// Register holding the packet offset.
        src: Reg,
        /// Added offset.
        imm: i32,
    },
    /// Unconditional jump to `pc + 1 + off`.
    Ja {
        /// Relative target.
        off: i32,
        /// Encoded as `ja32`/`gotol` (JMP32 class, offset in `imm`).
        long: bool,
    },
    /// Conditional jump to `pc + 1 + off`.
    Jmp {
        /// 32- or 64-bit comparison.
        width: Width,
        /// The comparison.
        cond: JmpCond,
        /// Left operand.
        dst: Reg,
        /// Right operand.
        src: Operand,
        /// Relative target.
        off: i16,
    },
    /// A call to a helper, local function or kfunc.
    Call(CallTarget),
    /// `callx dst`: call the helper whose id (or address) is in `dst`.
    CallX {
        /// Register holding the target.
        dst: Reg,
    },
    /// Return from the function (or program) with `r0`.
    Exit,
}

impl Insn {
    /// The number of 8-byte slots the instruction occupies (2 for `lddw`).
    pub fn slots(&self) -> usize {
        match self {
            Insn::LoadImm64 { .. } => 2,
            _ => 1,
        }
    }

    /// For a jump or local call at `pc`, the slot index it transfers control to.
    pub fn branch_target(&self, pc: usize) -> Option<i64> {
        let off = match *self {
            Insn::Ja { off, .. } => i64::from(off),
            Insn::Jmp { off, .. } => i64::from(off),
            Insn::Call(CallTarget::Local(off)) => i64::from(off),
            _ => return None,
        };
        i64::try_from(pc).ok().map(|pc| pc + 1 + off)
    }
}

/// One undecoded 8-byte slot, split into its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RawInsn {
    /// Opcode byte.
    pub code: u8,
    /// Destination register field (low nibble of byte 1).
    pub dst: u8,
    /// Source register field (high nibble of byte 1).
    pub src: u8,
    /// Signed 16-bit offset.
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl RawInsn {
    /// Splits 8 little-endian bytes into fields.
    pub fn from_bytes(b: [u8; 8]) -> RawInsn {
        RawInsn {
            code: b[0],
            dst: b[1] & 0x0f,
            src: b[1] >> 4,
            off: i16::from_le_bytes([b[2], b[3]]),
            imm: i32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    /// Joins the fields into 8 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        let off = self.off.to_le_bytes();
        let imm = self.imm.to_le_bytes();
        [
            self.code,
            (self.dst & 0x0f) | (self.src << 4),
            off[0],
            off[1],
            imm[0],
            imm[1],
            imm[2],
            imm[3],
        ]
    }

    /// The slot as the 64-bit number conformance files write (`0x5566778800000018`).
    pub fn to_u64(self) -> u64 {
        u64::from_le_bytes(self.to_bytes())
    }

    /// The slot from a 64-bit number.
    pub fn from_u64(v: u64) -> RawInsn {
        RawInsn::from_bytes(v.to_le_bytes())
    }
}

/// Why a slot could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The byte length is not a multiple of 8.
    #[error("bytecode length {len} is not a multiple of 8 (trailing {} bytes)", len % 8)]
    TrailingBytes {
        /// Total length in bytes.
        len: usize,
    },
    /// The opcode byte names no instruction.
    #[error("unknown opcode 0x{code:02x}")]
    UnknownOpcode {
        /// The opcode.
        code: u8,
    },
    /// A register field is above 10.
    #[error("invalid {field} register r{reg}")]
    InvalidRegister {
        /// `dst` or `src`.
        field: &'static str,
        /// The field's value.
        reg: u8,
    },
    /// A field the ISA requires to be zero is not.
    #[error("reserved field {field} must be 0 for opcode 0x{code:02x}, found {value}")]
    ReservedField {
        /// The opcode.
        code: u8,
        /// `dst`, `src`, `off` or `imm`.
        field: &'static str,
        /// The non-zero value.
        value: i64,
    },
    /// A field has a value outside the set the opcode allows.
    #[error("invalid {field} value {value} for opcode 0x{code:02x}")]
    InvalidField {
        /// The opcode.
        code: u8,
        /// The field name.
        field: &'static str,
        /// The value found.
        value: i64,
    },
    /// `lddw` is the last slot, missing its second half.
    #[error("lddw is missing its second slot")]
    TruncatedLddw,
    /// The second slot of `lddw` has a non-zero opcode, registers or offset.
    #[error("second slot of lddw must have zero opcode, registers and offset")]
    BadLddwSecondSlot,
}

/// A decoding failure at a slot index.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("instruction {pc}: {kind}")]
pub struct DecodeError {
    /// The slot index where decoding failed.
    pub pc: usize,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

fn reg(field: &'static str, n: u8) -> Result<Reg, DecodeErrorKind> {
    Reg::new(n).ok_or(DecodeErrorKind::InvalidRegister { field, reg: n })
}

fn zero(code: u8, field: &'static str, value: i64) -> Result<(), DecodeErrorKind> {
    if value == 0 {
        Ok(())
    } else {
        Err(DecodeErrorKind::ReservedField { code, field, value })
    }
}

fn invalid(code: u8, field: &'static str, value: i64) -> DecodeErrorKind {
    DecodeErrorKind::InvalidField { code, field, value }
}

fn alu_op(code: u8, off: i16, src_is_reg: bool) -> Result<AluOp, DecodeErrorKind> {
    let op = code & 0xf0;
    let signed_ok = |plain: AluOp, signed: AluOp| match off {
        0 => Ok(plain),
        1 => Ok(signed),
        _ => Err(invalid(code, "off", i64::from(off))),
    };
    let no_off = |op: AluOp| zero(code, "off", i64::from(off)).map(|()| op);
    match op {
        0x00 => no_off(AluOp::Add),
        0x10 => no_off(AluOp::Sub),
        0x20 => no_off(AluOp::Mul),
        0x30 => signed_ok(AluOp::Div, AluOp::SDiv),
        0x40 => no_off(AluOp::Or),
        0x50 => no_off(AluOp::And),
        0x60 => no_off(AluOp::Lsh),
        0x70 => no_off(AluOp::Rsh),
        0x90 => signed_ok(AluOp::Mod, AluOp::SMod),
        0xa0 => no_off(AluOp::Xor),
        0xb0 => match off {
            0 => Ok(AluOp::Mov),
            8 if src_is_reg => Ok(AluOp::MovSx(SxBits::B8)),
            16 if src_is_reg => Ok(AluOp::MovSx(SxBits::B16)),
            32 if src_is_reg && code & 0x07 == CLASS_ALU64 => Ok(AluOp::MovSx(SxBits::B32)),
            _ => Err(invalid(code, "off", i64::from(off))),
        },
        0xc0 => no_off(AluOp::Arsh),
        _ => Err(DecodeErrorKind::UnknownOpcode { code }),
    }
}

fn alu_code(op: AluOp) -> (u8, i16) {
    match op {
        AluOp::Add => (0x00, 0),
        AluOp::Sub => (0x10, 0),
        AluOp::Mul => (0x20, 0),
        AluOp::Div => (0x30, 0),
        AluOp::SDiv => (0x30, 1),
        AluOp::Or => (0x40, 0),
        AluOp::And => (0x50, 0),
        AluOp::Lsh => (0x60, 0),
        AluOp::Rsh => (0x70, 0),
        AluOp::Mod => (0x90, 0),
        AluOp::SMod => (0x90, 1),
        AluOp::Xor => (0xa0, 0),
        AluOp::Mov => (0xb0, 0),
        AluOp::MovSx(b) => (0xb0, i16::from(b.bits_u8())),
        AluOp::Arsh => (0xc0, 0),
    }
}

fn jmp_cond(code: u8) -> Option<JmpCond> {
    Some(match code & 0xf0 {
        0x10 => JmpCond::Eq,
        0x20 => JmpCond::Gt,
        0x30 => JmpCond::Ge,
        0x40 => JmpCond::Set,
        0x50 => JmpCond::Ne,
        0x60 => JmpCond::Sgt,
        0x70 => JmpCond::Sge,
        0xa0 => JmpCond::Lt,
        0xb0 => JmpCond::Le,
        0xc0 => JmpCond::Slt,
        0xd0 => JmpCond::Sle,
        _ => return None,
    })
}

fn jmp_code(cond: JmpCond) -> u8 {
    match cond {
        JmpCond::Eq => 0x10,
        JmpCond::Gt => 0x20,
        JmpCond::Ge => 0x30,
        JmpCond::Set => 0x40,
        JmpCond::Ne => 0x50,
        JmpCond::Sgt => 0x60,
        JmpCond::Sge => 0x70,
        JmpCond::Lt => 0xa0,
        JmpCond::Le => 0xb0,
        JmpCond::Slt => 0xc0,
        JmpCond::Sle => 0xd0,
    }
}

fn atomic_op(code: u8, imm: i32) -> Result<AtomicOp, DecodeErrorKind> {
    let fetch = imm & ATOMIC_FETCH != 0;
    Ok(match imm {
        ATOMIC_XCHG => AtomicOp::Xchg,
        ATOMIC_CMPXCHG => AtomicOp::CmpXchg,
        0x00 | 0x01 => AtomicOp::Add { fetch },
        0x40 | 0x41 => AtomicOp::Or { fetch },
        0x50 | 0x51 => AtomicOp::And { fetch },
        0xa0 | 0xa1 => AtomicOp::Xor { fetch },
        _ => return Err(invalid(code, "imm", i64::from(imm))),
    })
}

fn atomic_imm(op: AtomicOp) -> i32 {
    let f = |base: i32, fetch: bool| if fetch { base | ATOMIC_FETCH } else { base };
    match op {
        AtomicOp::Add { fetch } => f(0x00, fetch),
        AtomicOp::Or { fetch } => f(0x40, fetch),
        AtomicOp::And { fetch } => f(0x50, fetch),
        AtomicOp::Xor { fetch } => f(0xa0, fetch),
        AtomicOp::Xchg => ATOMIC_XCHG,
        AtomicOp::CmpXchg => ATOMIC_CMPXCHG,
    }
}

/// Decodes one instruction starting at `slot`; `next` is the following slot (needed by `lddw`).
pub fn decode_one(slot: RawInsn, next: Option<RawInsn>) -> Result<Insn, DecodeErrorKind> {
    let RawInsn {
        code,
        dst,
        src,
        off,
        imm,
    } = slot;
    let (off64, imm64) = (i64::from(off), i64::from(imm));
    let class = code & 0x07;
    match class {
        CLASS_ALU | CLASS_ALU64 => {
            let width = if class == CLASS_ALU64 {
                Width::W64
            } else {
                Width::W32
            };
            let dst = reg("dst", dst)?;
            let src_is_reg = code & SRC_X != 0;
            match code & 0xf0 {
                0x80 => {
                    // neg
                    if src_is_reg {
                        return Err(DecodeErrorKind::UnknownOpcode { code });
                    }
                    zero(code, "src", i64::from(src))?;
                    zero(code, "off", off64)?;
                    zero(code, "imm", imm64)?;
                    Ok(Insn::Neg { width, dst })
                }
                0xd0 => {
                    // byte swap
                    zero(code, "src", i64::from(src))?;
                    zero(code, "off", off64)?;
                    if !matches!(imm, 16 | 32 | 64) {
                        return Err(invalid(code, "imm", imm64));
                    }
                    let kind = match (width, src_is_reg) {
                        (Width::W32, false) => Endian::ToLe,
                        (Width::W32, true) => Endian::ToBe,
                        (Width::W64, false) => Endian::Swap,
                        (Width::W64, true) => return Err(DecodeErrorKind::UnknownOpcode { code }),
                    };
                    let bits = u8::try_from(imm).map_err(|_| invalid(code, "imm", imm64))?;
                    Ok(Insn::Endian { kind, bits, dst })
                }
                _ => {
                    let op = alu_op(code, off, src_is_reg)?;
                    let src = if src_is_reg {
                        zero(code, "imm", imm64)?;
                        Operand::Reg(reg("src", src)?)
                    } else {
                        zero(code, "src", i64::from(src))?;
                        Operand::Imm(imm)
                    };
                    Ok(Insn::Alu {
                        width,
                        op,
                        dst,
                        src,
                    })
                }
            }
        }
        CLASS_JMP | CLASS_JMP32 => {
            let width = if class == CLASS_JMP {
                Width::W64
            } else {
                Width::W32
            };
            let src_is_reg = code & SRC_X != 0;
            match code & 0xf0 {
                0x00 => {
                    // ja / ja32
                    if src_is_reg {
                        return Err(DecodeErrorKind::UnknownOpcode { code });
                    }
                    zero(code, "dst", i64::from(dst))?;
                    zero(code, "src", i64::from(src))?;
                    if width == Width::W64 {
                        zero(code, "imm", imm64)?;
                        Ok(Insn::Ja {
                            off: i32::from(off),
                            long: false,
                        })
                    } else {
                        zero(code, "off", off64)?;
                        Ok(Insn::Ja {
                            off: imm,
                            long: true,
                        })
                    }
                }
                0x80 if width == Width::W64 => {
                    zero(code, "off", off64)?;
                    if src_is_reg {
                        // callx: register in dst.
                        zero(code, "src", i64::from(src))?;
                        zero(code, "imm", imm64)?;
                        Ok(Insn::CallX {
                            dst: reg("dst", dst)?,
                        })
                    } else {
                        zero(code, "dst", i64::from(dst))?;
                        let target = match src {
                            CALL_HELPER => CallTarget::Helper(imm),
                            CALL_LOCAL => CallTarget::Local(imm),
                            CALL_KFUNC => CallTarget::Kfunc(imm),
                            _ => return Err(invalid(code, "src", i64::from(src))),
                        };
                        Ok(Insn::Call(target))
                    }
                }
                0x90 if width == Width::W64 => {
                    if src_is_reg {
                        return Err(DecodeErrorKind::UnknownOpcode { code });
                    }
                    zero(code, "dst", i64::from(dst))?;
                    zero(code, "src", i64::from(src))?;
                    zero(code, "off", off64)?;
                    zero(code, "imm", imm64)?;
                    Ok(Insn::Exit)
                }
                _ => {
                    let cond = jmp_cond(code).ok_or(DecodeErrorKind::UnknownOpcode { code })?;
                    let dst = reg("dst", dst)?;
                    let src = if src_is_reg {
                        zero(code, "imm", imm64)?;
                        Operand::Reg(reg("src", src)?)
                    } else {
                        zero(code, "src", i64::from(src))?;
                        Operand::Imm(imm)
                    };
                    Ok(Insn::Jmp {
                        width,
                        cond,
                        dst,
                        src,
                        off,
                    })
                }
            }
        }
        CLASS_LDX => {
            let mode = code & 0xe0;
            let signed = match mode {
                MODE_MEM => false,
                MODE_MEMSX if code & 0x18 != SIZE_DW => true,
                _ => return Err(DecodeErrorKind::UnknownOpcode { code }),
            };
            zero(code, "imm", imm64)?;
            Ok(Insn::Load {
                size: Size::from_code(code),
                signed,
                dst: reg("dst", dst)?,
                src: reg("src", src)?,
                off,
            })
        }
        CLASS_ST => {
            if code & 0xe0 != MODE_MEM {
                return Err(DecodeErrorKind::UnknownOpcode { code });
            }
            zero(code, "src", i64::from(src))?;
            Ok(Insn::Store {
                size: Size::from_code(code),
                dst: reg("dst", dst)?,
                off,
                src: Operand::Imm(imm),
            })
        }
        CLASS_STX => match code & 0xe0 {
            MODE_MEM => {
                zero(code, "imm", imm64)?;
                Ok(Insn::Store {
                    size: Size::from_code(code),
                    dst: reg("dst", dst)?,
                    off,
                    src: Operand::Reg(reg("src", src)?),
                })
            }
            MODE_ATOMIC => {
                let size = Size::from_code(code);
                if !matches!(size, Size::W | Size::DW) {
                    return Err(DecodeErrorKind::UnknownOpcode { code });
                }
                Ok(Insn::Atomic {
                    size,
                    op: atomic_op(code, imm)?,
                    dst: reg("dst", dst)?,
                    off,
                    src: reg("src", src)?,
                })
            }
            _ => Err(DecodeErrorKind::UnknownOpcode { code }),
        },
        _ => {
            // CLASS_LD
            let size = Size::from_code(code);
            match code & 0xe0 {
                MODE_IMM if size == Size::DW => {
                    let dst = reg("dst", dst)?;
                    zero(code, "off", off64)?;
                    let kind = LddwKind::from_src(src)
                        .ok_or_else(|| invalid(code, "src", i64::from(src)))?;
                    let next = next.ok_or(DecodeErrorKind::TruncatedLddw)?;
                    if next.code != 0 || next.dst != 0 || next.src != 0 || next.off != 0 {
                        return Err(DecodeErrorKind::BadLddwSecondSlot);
                    }
                    Ok(Insn::LoadImm64 {
                        dst,
                        kind,
                        imm,
                        next_imm: next.imm,
                    })
                }
                MODE_ABS if size != Size::DW => {
                    zero(code, "dst", i64::from(dst))?;
                    zero(code, "src", i64::from(src))?;
                    zero(code, "off", off64)?;
                    Ok(Insn::LoadAbs { size, imm })
                }
                MODE_IND if size != Size::DW => {
                    zero(code, "dst", i64::from(dst))?;
                    zero(code, "off", off64)?;
                    Ok(Insn::LoadInd {
                        size,
                        src: reg("src", src)?,
                        imm,
                    })
                }
                _ => Err(DecodeErrorKind::UnknownOpcode { code }),
            }
        }
    }
}

/// Decodes a whole program. Each returned instruction is paired with its slot index.
pub fn decode(bytes: &[u8]) -> Result<Vec<(usize, Insn)>, DecodeError> {
    if !bytes.len().is_multiple_of(INSN_SIZE) {
        return Err(DecodeError {
            pc: bytes.len() / INSN_SIZE,
            kind: DecodeErrorKind::TrailingBytes { len: bytes.len() },
        });
    }
    let slots: Vec<RawInsn> = bytes
        .chunks_exact(INSN_SIZE)
        .map(|c| {
            let mut b = [0u8; 8];
            b.copy_from_slice(c);
            RawInsn::from_bytes(b)
        })
        .collect();
    decode_slots(&slots)
}

/// Decodes a program given as raw slots.
pub fn decode_slots(slots: &[RawInsn]) -> Result<Vec<(usize, Insn)>, DecodeError> {
    let mut out = Vec::with_capacity(slots.len());
    let mut pc = 0;
    while let Some(&slot) = slots.get(pc) {
        let insn = decode_one(slot, slots.get(pc + 1).copied())
            .map_err(|kind| DecodeError { pc, kind })?;
        out.push((pc, insn));
        pc += insn.slots();
    }
    Ok(out)
}

/// Encodes one instruction into its one or two slots.
pub fn encode_one(insn: &Insn) -> (RawInsn, Option<RawInsn>) {
    let raw = |code: u8, dst: Reg, src: u8, off: i16, imm: i32| RawInsn {
        code,
        dst: dst.num(),
        src,
        off,
        imm,
    };
    let class_of = |w: Width, c32: u8, c64: u8| if w == Width::W64 { c64 } else { c32 };
    let r0 = Reg::R0;
    let one = match *insn {
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => {
            let (opc, off) = alu_code(op);
            let class = class_of(width, CLASS_ALU, CLASS_ALU64);
            match src {
                Operand::Reg(s) => raw(class | SRC_X | opc, dst, s.num(), off, 0),
                Operand::Imm(imm) => raw(class | opc, dst, 0, off, imm),
            }
        }
        Insn::Neg { width, dst } => {
            raw(class_of(width, CLASS_ALU, CLASS_ALU64) | 0x80, dst, 0, 0, 0)
        }
        Insn::Endian { kind, bits, dst } => {
            let code = match kind {
                Endian::ToLe => CLASS_ALU | 0xd0,
                Endian::ToBe => CLASS_ALU | SRC_X | 0xd0,
                Endian::Swap => CLASS_ALU64 | 0xd0,
            };
            raw(code, dst, 0, 0, i32::from(bits))
        }
        Insn::Load {
            size,
            signed,
            dst,
            src,
            off,
        } => {
            let mode = if signed { MODE_MEMSX } else { MODE_MEM };
            raw(CLASS_LDX | mode | size.code(), dst, src.num(), off, 0)
        }
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => match src {
            Operand::Reg(s) => raw(CLASS_STX | MODE_MEM | size.code(), dst, s.num(), off, 0),
            Operand::Imm(imm) => raw(CLASS_ST | MODE_MEM | size.code(), dst, 0, off, imm),
        },
        Insn::Atomic {
            size,
            op,
            dst,
            off,
            src,
        } => raw(
            CLASS_STX | MODE_ATOMIC | size.code(),
            dst,
            src.num(),
            off,
            atomic_imm(op),
        ),
        Insn::LoadImm64 {
            dst,
            kind,
            imm,
            next_imm,
        } => {
            let first = raw(CLASS_LD | MODE_IMM | SIZE_DW, dst, kind.src(), 0, imm);
            let second = RawInsn {
                imm: next_imm,
                ..RawInsn::default()
            };
            return (first, Some(second));
        }
        Insn::LoadAbs { size, imm } => raw(CLASS_LD | MODE_ABS | size.code(), r0, 0, 0, imm),
        Insn::LoadInd { size, src, imm } => {
            raw(CLASS_LD | MODE_IND | size.code(), r0, src.num(), 0, imm)
        }
        // A short `ja` whose offset does not fit 16 bits is encoded as `gotol` (same meaning).
        Insn::Ja { off, long: false } => match i16::try_from(off) {
            Ok(off) => raw(CLASS_JMP, r0, 0, off, 0),
            Err(_) => raw(CLASS_JMP32, r0, 0, 0, off),
        },
        Insn::Ja { off, long: true } => raw(CLASS_JMP32, r0, 0, 0, off),
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => {
            let class = class_of(width, CLASS_JMP32, CLASS_JMP);
            match src {
                Operand::Reg(s) => raw(class | SRC_X | jmp_code(cond), dst, s.num(), off, 0),
                Operand::Imm(imm) => raw(class | jmp_code(cond), dst, 0, off, imm),
            }
        }
        Insn::Call(target) => {
            let (src, imm) = match target {
                CallTarget::Helper(id) => (CALL_HELPER, id),
                CallTarget::Local(off) => (CALL_LOCAL, off),
                CallTarget::Kfunc(id) => (CALL_KFUNC, id),
            };
            raw(CLASS_JMP | 0x80, r0, src, 0, imm)
        }
        Insn::CallX { dst } => raw(CLASS_JMP | SRC_X | 0x80, dst, 0, 0, 0),
        Insn::Exit => raw(CLASS_JMP | 0x90, r0, 0, 0, 0),
    };
    (one, None)
}

/// Encodes a sequence of instructions to bytecode.
pub fn encode(insns: &[Insn]) -> Vec<u8> {
    let mut out = Vec::with_capacity(insns.len() * INSN_SIZE);
    for insn in insns {
        let (first, second) = encode_one(insn);
        out.extend_from_slice(&first.to_bytes());
        if let Some(second) = second {
            out.extend_from_slice(&second.to_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_ja_too_far_for_16_bits_is_encoded_as_gotol() {
        for off in [40_000, -40_000, i32::MAX] {
            let bytes = encode(&[Insn::Ja { off, long: false }]);
            let decoded = decode(&bytes).expect("valid");
            assert_eq!(decoded, vec![(0, Insn::Ja { off, long: true })]);
        }
        let bytes = encode(&[Insn::Ja {
            off: -3,
            long: false,
        }]);
        assert_eq!(
            decode(&bytes).expect("valid"),
            vec![(
                0,
                Insn::Ja {
                    off: -3,
                    long: false
                }
            )]
        );
    }

    #[test]
    fn lddw_round_trips_through_u64_slots() {
        let slots = [
            RawInsn::from_u64(0x5566778800000018),
            RawInsn::from_u64(0x1122334400000000),
        ];
        let insns = decode_slots(&slots).expect("valid lddw");
        assert_eq!(
            insns,
            vec![(
                0,
                Insn::LoadImm64 {
                    dst: Reg::R0,
                    kind: LddwKind::Imm,
                    imm: 0x55667788,
                    next_imm: 0x11223344
                }
            )]
        );
        let (a, b) = encode_one(&insns[0].1);
        assert_eq!([a, b.expect("two slots")], slots);
    }

    #[test]
    fn reserved_fields_are_refused() {
        // add64 imm with offset 1.
        let err = decode(&[0x07, 0x00, 0x01, 0x00, 0x01, 0, 0, 0]).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::ReservedField { field: "off", .. }
        ));
        // exit with dst 1.
        let err = decode(&[0x95, 0x01, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::ReservedField { field: "dst", .. }
        ));
    }

    #[test]
    fn truncated_input_is_refused() {
        let err = decode(&[0x95, 0, 0]).unwrap_err();
        assert!(matches!(
            err.kind,
            DecodeErrorKind::TrailingBytes { len: 3 }
        ));
        let err = decode(&[0x18, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TruncatedLddw);
    }
}
