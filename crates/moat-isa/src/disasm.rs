//! Disassembler: typed instructions to the text syntax of the conformance suite's `-- asm` sections.
//!
//! The output re-assembles to the same bytes (see [`crate::asm`]). Jump and local-call targets are
//! written as signed relative offsets (`+3`, `-2`), since bytecode carries no label names.

use crate::insn::{AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Width};
use std::fmt::Write;

/// The mnemonic of a binary ALU operation, without the width suffix.
pub fn alu_mnemonic(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Mul => "mul",
        AluOp::Div => "div",
        AluOp::SDiv => "sdiv",
        AluOp::Or => "or",
        AluOp::And => "and",
        AluOp::Lsh => "lsh",
        AluOp::Rsh => "rsh",
        AluOp::Mod => "mod",
        AluOp::SMod => "smod",
        AluOp::Xor => "xor",
        AluOp::Mov => "mov",
        AluOp::MovSx(_) => "movsx",
        AluOp::Arsh => "arsh",
    }
}

/// The mnemonic of a conditional jump, without the width suffix.
pub fn jmp_mnemonic(cond: JmpCond) -> &'static str {
    match cond {
        JmpCond::Eq => "jeq",
        JmpCond::Gt => "jgt",
        JmpCond::Ge => "jge",
        JmpCond::Set => "jset",
        JmpCond::Ne => "jne",
        JmpCond::Sgt => "jsgt",
        JmpCond::Sge => "jsge",
        JmpCond::Lt => "jlt",
        JmpCond::Le => "jle",
        JmpCond::Slt => "jslt",
        JmpCond::Sle => "jsle",
    }
}

fn suffix32(width: Width) -> &'static str {
    match width {
        Width::W32 => "32",
        Width::W64 => "",
    }
}

fn operand(src: Operand) -> String {
    match src {
        Operand::Reg(r) => r.to_string(),
        Operand::Imm(i) => imm(i64::from(i)),
    }
}

/// Writes an immediate: decimal when small, hexadecimal otherwise.
fn imm(v: i64) -> String {
    if (-65536..=65536).contains(&v) {
        v.to_string()
    } else if v < 0 {
        format!("-{:#x}", v.unsigned_abs())
    } else {
        format!("{v:#x}")
    }
}

fn rel(off: i64) -> String {
    if off < 0 {
        off.to_string()
    } else {
        format!("+{off}")
    }
}

fn mem(base: crate::Reg, off: i16) -> String {
    match off {
        0 => format!("[{base}]"),
        o if o < 0 => format!("[{base}-{}]", o.unsigned_abs()),
        o => format!("[{base}+{o}]"),
    }
}

fn pseudo(name: &str, imm: i32, next_imm: i32) -> String {
    if next_imm == 0 {
        format!("{name}({imm})")
    } else {
        format!("{name}({imm}, {next_imm})")
    }
}

/// Disassembles one instruction.
pub fn disasm_one(insn: &Insn) -> String {
    match *insn {
        Insn::Alu {
            width,
            op: AluOp::MovSx(bits),
            dst,
            src,
        } => {
            let w = if width == Width::W64 { 64 } else { 32 };
            format!("movsx{}{w} {dst}, {}", bits.bits(), operand(src))
        }
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => format!(
            "{}{} {dst}, {}",
            alu_mnemonic(op),
            suffix32(width),
            operand(src)
        ),
        Insn::Neg { width, dst } => format!("neg{} {dst}", suffix32(width)),
        Insn::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            format!("{name}{bits} {dst}")
        }
        Insn::Load {
            size,
            signed,
            dst,
            src,
            off,
        } => format!(
            "ldx{}{} {dst}, {}",
            if signed { "s" } else { "" },
            size.suffix(),
            mem(src, off)
        ),
        Insn::Store {
            size,
            dst,
            off,
            src,
        } => match src {
            Operand::Reg(r) => format!("stx{} {}, {r}", size.suffix(), mem(dst, off)),
            Operand::Imm(i) => format!(
                "st{} {}, {}",
                size.suffix(),
                mem(dst, off),
                imm(i64::from(i))
            ),
        },
        Insn::Atomic {
            size,
            op,
            dst,
            off,
            src,
        } => {
            let w = if size == crate::Size::W { "32" } else { "" };
            let (fetch, name) = match op {
                AtomicOp::Add { fetch } => (fetch, "add"),
                AtomicOp::Or { fetch } => (fetch, "or"),
                AtomicOp::And { fetch } => (fetch, "and"),
                AtomicOp::Xor { fetch } => (fetch, "xor"),
                AtomicOp::Xchg => (false, "xchg"),
                AtomicOp::CmpXchg => (false, "cmpxchg"),
            };
            let fetch = if fetch { "fetch " } else { "" };
            format!("lock {fetch}{name}{w} {}, {src}", mem(dst, off))
        }
        Insn::LoadImm64 {
            dst,
            kind,
            imm: lo,
            next_imm,
        } => {
            let value = match kind {
                LddwKind::Imm => {
                    let v =
                        (u64::from(next_imm.cast_unsigned()) << 32) | u64::from(lo.cast_unsigned());
                    format!("{v:#x}")
                }
                LddwKind::MapFd => pseudo("map_fd", lo, next_imm),
                LddwKind::MapValue => pseudo("map_value", lo, next_imm),
                LddwKind::VarAddr => pseudo("var_addr", lo, next_imm),
                LddwKind::Code => pseudo("code", lo, next_imm),
                LddwKind::MapIdx => pseudo("map_idx", lo, next_imm),
                LddwKind::MapIdxValue => pseudo("map_idx_value", lo, next_imm),
            };
            format!("lddw {dst}, {value}")
        }
        Insn::LoadAbs { size, imm: i } => format!("ldabs{} {}", size.suffix(), imm(i64::from(i))),
        Insn::LoadInd { size, src, imm: i } => {
            format!("ldind{} {src}, {}", size.suffix(), imm(i64::from(i)))
        }
        Insn::Ja { off, long } => {
            format!(
                "{} {}",
                if long { "ja32" } else { "ja" },
                rel(i64::from(off))
            )
        }
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => format!(
            "{}{} {dst}, {}, {}",
            jmp_mnemonic(cond),
            suffix32(width),
            operand(src),
            rel(i64::from(off))
        ),
        Insn::Call(CallTarget::Helper(id)) => format!("call {}", imm(i64::from(id))),
        Insn::Call(CallTarget::Local(off)) => format!("call local {}", rel(i64::from(off))),
        Insn::Call(CallTarget::Kfunc(id)) => format!("call kfunc {}", imm(i64::from(id))),
        Insn::CallX { dst } => format!("call {dst}"),
        Insn::Exit => "exit".to_string(),
    }
}

/// Disassembles a program, one instruction per line. With `with_pc`, each line starts with its slot index.
pub fn disasm(insns: &[(usize, Insn)], with_pc: bool) -> String {
    let mut out = String::new();
    for (pc, insn) in insns {
        if with_pc {
            let _ = write!(out, "{pc:5}: ");
        }
        out.push_str(&disasm_one(insn));
        out.push('\n');
    }
    out
}
