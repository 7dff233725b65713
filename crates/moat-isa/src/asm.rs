//! Assembler for the text syntax of the conformance suite's `-- asm` sections.
//!
//! One instruction per line; `#` starts a comment; `name:` defines a label (alone or before an
//! instruction). Registers are `%r0`..`%r10`; memory operands `[%r1+8]`, `[%r10-4]`, `[%r1]`; jump targets
//! a label or a signed slot offset (`+3`, `-2`); the undefined label `exit` names the last `exit`. Calls: `call 5` (helper), `call local NAME`,
//! `call kfunc N`, `call %r2` (callx). Atomics: `lock [fetch] add[32] [%r10-8], %r1`, `lock xchg`,
//! `lock cmpxchg`. `lddw` takes a 64-bit value or a pseudo source: `map_fd(N)`, `map_value(N, OFF)`,
//! `map_idx(N)`, `map_idx_value(N, OFF)`, `var_addr(N)`, `code(OFF)` or `code(LABEL)`.
//! 32-bit immediates are a decimal in `i32` range or a hexadecimal up to `0xffffffff`; anything else is
//! refused rather than truncated.

use crate::insn::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Reg, Size, SxBits, Width,
};
use std::collections::HashMap;
use thiserror::Error;

/// What is wrong with a line of assembly.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AsmErrorKind {
    /// The mnemonic is not an eBPF instruction.
    #[error("unknown mnemonic `{0}`")]
    UnknownMnemonic(String),
    /// Wrong number of operands.
    #[error("invalid number of operands for {mnemonic}: expected {expected}, found {found}")]
    OperandCount {
        /// The mnemonic.
        mnemonic: String,
        /// How many it takes.
        expected: usize,
        /// How many were given.
        found: usize,
    },
    /// An operand that should be a register is not `%r0`..`%r10`.
    #[error("invalid register `{0}`")]
    InvalidRegister(String),
    /// An operand that should be a number is not one.
    #[error("invalid number `{0}`")]
    InvalidNumber(String),
    /// A number does not fit its field.
    #[error("{what} `{text}` is out of range")]
    OutOfRange {
        /// Which field (immediate, offset, jump offset).
        what: &'static str,
        /// The operand text.
        text: String,
    },
    /// A memory operand is not `[%rN]`, `[%rN+off]` or `[%rN-off]`.
    #[error("invalid memory operand `{0}`")]
    InvalidMemory(String),
    /// A jump or call names a label that is not defined.
    #[error("unknown label `{0}`")]
    UnknownLabel(String),
    /// A label is defined twice.
    #[error("label `{0}` defined twice")]
    DuplicateLabel(String),
    /// A label name is not an identifier.
    #[error("invalid label name `{0}`")]
    InvalidLabel(String),
    /// The source holds no instruction.
    #[error("no instructions")]
    Empty,
}

/// An assembly error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {kind} (in `{text}`)")]
pub struct AsmError {
    /// The 1-based line number within the assembled text.
    pub line: usize,
    /// The offending line, trimmed.
    pub text: String,
    /// What is wrong.
    pub kind: AsmErrorKind,
}

struct Line<'a> {
    number: usize,
    text: &'a str,
    mnemonic: String,
    operands: Vec<&'a str>,
    pc: usize,
}

/// Assembles source text into instructions.
pub fn assemble(source: &str) -> Result<Vec<Insn>, AsmError> {
    let mut labels: HashMap<&str, usize> = HashMap::new();
    let mut lines = Vec::new();
    let mut pc = 0usize;
    for (i, raw) in source.lines().enumerate() {
        let number = i + 1;
        let err = |kind| AsmError {
            line: number,
            text: raw.trim().to_string(),
            kind,
        };
        let mut text = raw.split('#').next().unwrap_or("").trim();
        // Labels: `name:` possibly followed by an instruction.
        while let Some(colon) = text.find(':') {
            let (name, rest) = text.split_at(colon);
            let name = name.trim();
            if name.contains(char::is_whitespace) || name.contains('[') {
                break;
            }
            if !is_label(name) {
                return Err(err(AsmErrorKind::InvalidLabel(name.to_string())));
            }
            if labels.insert(name, pc).is_some() {
                return Err(err(AsmErrorKind::DuplicateLabel(name.to_string())));
            }
            text = rest.get(1..).unwrap_or("").trim();
        }
        if text.is_empty() {
            continue;
        }
        let (mnemonic, operands) = split_line(text);
        let slots = if mnemonic == "lddw" { 2 } else { 1 };
        lines.push(Line {
            number,
            text: raw.trim(),
            mnemonic,
            operands,
            pc,
        });
        pc += slots;
    }
    // The conformance suite jumps to `exit` without defining it: the program's last `exit`.
    if !labels.contains_key("exit") {
        if let Some(last_exit) = lines.iter().rev().find(|l| l.mnemonic == "exit") {
            labels.insert("exit", last_exit.pc);
        }
    }
    if lines.is_empty() {
        return Err(AsmError {
            line: 0,
            text: String::new(),
            kind: AsmErrorKind::Empty,
        });
    }
    lines
        .iter()
        .map(|l| {
            parse_line(l, &labels).map_err(|kind| AsmError {
                line: l.number,
                text: l.text.to_string(),
                kind,
            })
        })
        .collect()
}

/// Assembles source text straight to bytecode.
pub fn assemble_bytes(source: &str) -> Result<Vec<u8>, AsmError> {
    assemble(source).map(|insns| crate::insn::encode(&insns))
}

fn is_label(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}

/// Splits a line into its mnemonic (with `lock`/`fetch`/`local`/`kfunc` prefixes folded in) and operands.
fn split_line(text: &str) -> (String, Vec<&str>) {
    let mut rest = text;
    let mut words: Vec<String> = Vec::new();
    loop {
        let (word, tail) = match rest.find(char::is_whitespace) {
            Some(i) => (&rest[..i], rest[i..].trim_start()),
            None => (rest, ""),
        };
        words.push(word.to_ascii_lowercase());
        rest = tail;
        let next_is = |w: &str| {
            tail.strip_prefix(w)
                .is_some_and(|t| t.starts_with(char::is_whitespace))
        };
        let more = match words.as_slice() {
            [w] if w == "lock" => true,
            [l, f] if l == "lock" && f == "fetch" => true,
            [c] if c == "call" => next_is("local") || next_is("kfunc"),
            _ => false,
        };
        if !more || rest.is_empty() {
            break;
        }
    }
    let operands = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split(',').map(str::trim).collect()
    };
    (words.join(" "), operands)
}

fn expect_count(l: &Line<'_>, n: usize) -> Result<(), AsmErrorKind> {
    if l.operands.len() == n {
        Ok(())
    } else {
        Err(AsmErrorKind::OperandCount {
            mnemonic: l.mnemonic.clone(),
            expected: n,
            found: l.operands.len(),
        })
    }
}

fn parse_reg(s: &str) -> Result<Reg, AsmErrorKind> {
    s.strip_prefix("%r")
        .or_else(|| s.strip_prefix('r'))
        .filter(|d| !d.is_empty() && d.len() <= 2 && d.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|d| d.parse::<u8>().ok())
        .and_then(Reg::new)
        .ok_or_else(|| AsmErrorKind::InvalidRegister(s.to_string()))
}

/// Parses a signed decimal or (optionally negative) hexadecimal integer.
fn parse_int(s: &str) -> Result<(i128, bool), AsmErrorKind> {
    let bad = || AsmErrorKind::InvalidNumber(s.to_string());
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (hex, digits) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        Some(h) => (true, h),
        None => (false, body),
    };
    if digits.is_empty() || digits.len() > 20 {
        return Err(bad());
    }
    let v = i128::from_str_radix(digits, if hex { 16 } else { 10 }).map_err(|_| bad())?;
    Ok((if neg { -v } else { v }, hex))
}

/// A 32-bit immediate: decimal in `i32` range, or hexadecimal bit pattern up to `0xffffffff`.
fn parse_imm32(s: &str) -> Result<i32, AsmErrorKind> {
    let (v, hex) = parse_int(s)?;
    let out_of_range = || AsmErrorKind::OutOfRange {
        what: "immediate",
        text: s.to_string(),
    };
    if hex && v >= 0 {
        u32::try_from(v)
            .map(u32::cast_signed)
            .map_err(|_| out_of_range())
    } else {
        i32::try_from(v).map_err(|_| out_of_range())
    }
}

fn parse_imm64(s: &str) -> Result<(i32, i32), AsmErrorKind> {
    let (v, _) = parse_int(s)?;
    let bits = if v < 0 {
        i64::try_from(v).map(i64::cast_unsigned)
    } else {
        u64::try_from(v)
    }
    .map_err(|_| AsmErrorKind::OutOfRange {
        what: "64-bit immediate",
        text: s.to_string(),
    })?;
    let [b0, b1, b2, b3, b4, b5, b6, b7] = bits.to_le_bytes();
    Ok((
        i32::from_le_bytes([b0, b1, b2, b3]),
        i32::from_le_bytes([b4, b5, b6, b7]),
    ))
}

fn parse_off16(s: &str, what: &'static str) -> Result<i16, AsmErrorKind> {
    let (v, _) = parse_int(s)?;
    i16::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
        what,
        text: s.to_string(),
    })
}

fn parse_operand(s: &str) -> Result<Operand, AsmErrorKind> {
    if s.starts_with('%') {
        parse_reg(s).map(Operand::Reg)
    } else {
        parse_imm32(s).map(Operand::Imm)
    }
}

fn parse_mem(s: &str) -> Result<(Reg, i16), AsmErrorKind> {
    let bad = || AsmErrorKind::InvalidMemory(s.to_string());
    let inner = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .ok_or_else(bad)?
        .trim();
    let split = inner.find(['+', '-']);
    let (base, off) = match split {
        Some(i) => (inner[..i].trim(), Some(inner[i..].replace(' ', ""))),
        None => (inner, None),
    };
    let reg = parse_reg(base)?;
    let off = match off {
        Some(o) => parse_off16(&o, "offset")?,
        None => 0,
    };
    Ok((reg, off))
}

/// A jump target: a label, or a signed relative slot offset.
fn parse_target(s: &str, pc: usize, labels: &HashMap<&str, usize>) -> Result<i64, AsmErrorKind> {
    if s.starts_with(['+', '-']) || s.starts_with(|c: char| c.is_ascii_digit()) {
        let (v, _) = parse_int(s)?;
        return i64::try_from(v).map_err(|_| AsmErrorKind::OutOfRange {
            what: "jump offset",
            text: s.to_string(),
        });
    }
    let target = labels
        .get(s)
        .ok_or_else(|| AsmErrorKind::UnknownLabel(s.to_string()))?;
    // Both are instruction indexes of one program, far below i64::MAX.
    let index = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    Ok(index(*target) - index(pc) - 1)
}

fn target16(s: &str, pc: usize, labels: &HashMap<&str, usize>) -> Result<i16, AsmErrorKind> {
    let off = parse_target(s, pc, labels)?;
    i16::try_from(off).map_err(|_| AsmErrorKind::OutOfRange {
        what: "jump offset",
        text: s.to_string(),
    })
}

fn target32(s: &str, pc: usize, labels: &HashMap<&str, usize>) -> Result<i32, AsmErrorKind> {
    let off = parse_target(s, pc, labels)?;
    i32::try_from(off).map_err(|_| AsmErrorKind::OutOfRange {
        what: "jump offset",
        text: s.to_string(),
    })
}

fn alu_from_name(name: &str) -> Option<AluOp> {
    Some(match name {
        "add" => AluOp::Add,
        "sub" => AluOp::Sub,
        "mul" => AluOp::Mul,
        "div" => AluOp::Div,
        "sdiv" => AluOp::SDiv,
        "or" => AluOp::Or,
        "and" => AluOp::And,
        "lsh" => AluOp::Lsh,
        "rsh" => AluOp::Rsh,
        "mod" => AluOp::Mod,
        "smod" => AluOp::SMod,
        "xor" => AluOp::Xor,
        "mov" => AluOp::Mov,
        "arsh" => AluOp::Arsh,
        _ => return None,
    })
}

fn jmp_from_name(name: &str) -> Option<JmpCond> {
    Some(match name {
        "jeq" => JmpCond::Eq,
        "jgt" => JmpCond::Gt,
        "jge" => JmpCond::Ge,
        "jset" => JmpCond::Set,
        "jne" => JmpCond::Ne,
        "jsgt" => JmpCond::Sgt,
        "jsge" => JmpCond::Sge,
        "jlt" => JmpCond::Lt,
        "jle" => JmpCond::Le,
        "jslt" => JmpCond::Slt,
        "jsle" => JmpCond::Sle,
        _ => return None,
    })
}

fn size_from_suffix(s: &str) -> Option<Size> {
    Some(match s {
        "b" => Size::B,
        "h" => Size::H,
        "w" => Size::W,
        "dw" => Size::DW,
        _ => return None,
    })
}

/// Splits a trailing width suffix: `add32` is 32-bit, `add64` and `add` are 64-bit.
fn split_width(m: &str) -> (&str, Width) {
    if let Some(base) = m.strip_suffix("32") {
        (base, Width::W32)
    } else if let Some(base) = m.strip_suffix("64") {
        (base, Width::W64)
    } else {
        (m, Width::W64)
    }
}

fn parse_lddw_value(
    s: &str,
    pc: usize,
    labels: &HashMap<&str, usize>,
) -> Result<(LddwKind, i32, i32), AsmErrorKind> {
    let kinds = [
        ("map_idx_value", LddwKind::MapIdxValue),
        ("map_value", LddwKind::MapValue),
        ("map_idx", LddwKind::MapIdx),
        ("map_fd", LddwKind::MapFd),
        ("var_addr", LddwKind::VarAddr),
        ("code", LddwKind::Code),
    ];
    for (name, kind) in kinds {
        if let Some(args) = s
            .strip_prefix(name)
            .map(str::trim)
            .and_then(|a| a.strip_prefix('('))
            .and_then(|a| a.strip_suffix(')'))
        {
            let parts: Vec<&str> = args.split(';').flat_map(|p| p.split(' ')).collect();
            let parts: Vec<&str> = parts.into_iter().filter(|p| !p.is_empty()).collect();
            return match parts.as_slice() {
                // A function by label: the offset from the slot after lddw's first.
                [a] if kind == LddwKind::Code && labels.contains_key(a) => {
                    Ok((kind, target32(a, pc, labels)?, 0))
                }
                [a] => Ok((kind, parse_imm32(a)?, 0)),
                [a, b] => Ok((kind, parse_imm32(a)?, parse_imm32(b)?)),
                _ => Err(AsmErrorKind::InvalidNumber(s.to_string())),
            };
        }
    }
    let (lo, hi) = parse_imm64(s)?;
    Ok((LddwKind::Imm, lo, hi))
}

fn parse_line(l: &Line<'_>, labels: &HashMap<&str, usize>) -> Result<Insn, AsmErrorKind> {
    let m = l.mnemonic.as_str();
    let ops = &l.operands;
    // Pseudo `lddw` operands contain a comma inside parentheses: re-join them.
    if m == "lddw" {
        let joined;
        let ops: Vec<&str> = if ops.len() > 2 {
            joined = ops[1..].join(";");
            vec![ops[0], joined.as_str()]
        } else {
            ops.clone()
        };
        if ops.len() != 2 {
            return Err(AsmErrorKind::OperandCount {
                mnemonic: m.to_string(),
                expected: 2,
                found: ops.len(),
            });
        }
        let dst = parse_reg(ops[0])?;
        let (kind, imm, next_imm) = parse_lddw_value(ops[1], l.pc, labels)?;
        return Ok(Insn::LoadImm64 {
            dst,
            kind,
            imm,
            next_imm,
        });
    }
    match m {
        "exit" => {
            expect_count(l, 0)?;
            return Ok(Insn::Exit);
        }
        "ja" | "ja32" => {
            expect_count(l, 1)?;
            let long = m == "ja32";
            let off = if long {
                target32(ops[0], l.pc, labels)?
            } else {
                i32::from(target16(ops[0], l.pc, labels)?)
            };
            return Ok(Insn::Ja { off, long });
        }
        "call" | "callx" => {
            expect_count(l, 1)?;
            if ops[0].starts_with('%') {
                return Ok(Insn::CallX {
                    dst: parse_reg(ops[0])?,
                });
            }
            return Ok(Insn::Call(CallTarget::Helper(parse_imm32(ops[0])?)));
        }
        "call local" => {
            expect_count(l, 1)?;
            return Ok(Insn::Call(CallTarget::Local(target32(
                ops[0], l.pc, labels,
            )?)));
        }
        "call kfunc" => {
            expect_count(l, 1)?;
            return Ok(Insn::Call(CallTarget::Kfunc(parse_imm32(ops[0])?)));
        }
        _ => {}
    }
    if let Some(rest) = m.strip_prefix("lock") {
        let rest = rest.trim();
        let (fetch, name) = match rest.strip_prefix("fetch ") {
            Some(n) => (true, n),
            None => (false, rest),
        };
        if name.is_empty() || ops.len() != 2 {
            return Err(AsmErrorKind::OperandCount {
                mnemonic: "lock".to_string(),
                expected: 2,
                found: ops.len(),
            });
        }
        let (base, width) = split_width(name);
        let op = match (base, fetch) {
            ("add", f) => AtomicOp::Add { fetch: f },
            ("or", f) => AtomicOp::Or { fetch: f },
            ("and", f) => AtomicOp::And { fetch: f },
            ("xor", f) => AtomicOp::Xor { fetch: f },
            ("xchg", _) => AtomicOp::Xchg,
            ("cmpxchg", _) => AtomicOp::CmpXchg,
            _ => return Err(AsmErrorKind::UnknownMnemonic(m.to_string())),
        };
        let (dst, off) = parse_mem(ops[0])?;
        let size = if width == Width::W32 {
            Size::W
        } else {
            Size::DW
        };
        return Ok(Insn::Atomic {
            size,
            op,
            dst,
            off,
            src: parse_reg(ops[1])?,
        });
    }
    if let Some(rest) = m.strip_prefix("movsx") {
        expect_count(l, 2)?;
        let (bits, width) = match rest {
            "832" => (SxBits::B8, Width::W32),
            "1632" => (SxBits::B16, Width::W32),
            "864" => (SxBits::B8, Width::W64),
            "1664" => (SxBits::B16, Width::W64),
            "3264" => (SxBits::B32, Width::W64),
            _ => return Err(AsmErrorKind::UnknownMnemonic(m.to_string())),
        };
        let src = parse_reg(ops[1])?;
        return Ok(Insn::Alu {
            width,
            op: AluOp::MovSx(bits),
            dst: parse_reg(ops[0])?,
            src: Operand::Reg(src),
        });
    }
    for (prefix, kind) in [
        ("le", Endian::ToLe),
        ("be", Endian::ToBe),
        ("bswap", Endian::Swap),
        ("swap", Endian::Swap),
    ] {
        if let Some(bits) = m.strip_prefix(prefix).and_then(|b| match b {
            "16" => Some(16u8),
            "32" => Some(32),
            "64" => Some(64),
            _ => None,
        }) {
            expect_count(l, 1)?;
            return Ok(Insn::Endian {
                kind,
                bits,
                dst: parse_reg(ops[0])?,
            });
        }
    }
    if let Some(rest) = m.strip_prefix("ldx") {
        let (signed, sz) = match rest.strip_prefix('s') {
            Some(s) if !s.is_empty() && size_from_suffix(s).is_some_and(|z| z != Size::DW) => {
                (true, s)
            }
            _ => (false, rest),
        };
        if let Some(size) = size_from_suffix(sz) {
            expect_count(l, 2)?;
            let dst = parse_reg(ops[0])?;
            let (src, off) = parse_mem(ops[1])?;
            return Ok(Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            });
        }
    }
    if let Some(rest) = m.strip_prefix("stx") {
        if let Some(size) = size_from_suffix(rest) {
            expect_count(l, 2)?;
            let (dst, off) = parse_mem(ops[0])?;
            return Ok(Insn::Store {
                size,
                dst,
                off,
                src: Operand::Reg(parse_reg(ops[1])?),
            });
        }
    }
    if let Some(rest) = m.strip_prefix("st") {
        if let Some(size) = size_from_suffix(rest) {
            expect_count(l, 2)?;
            let (dst, off) = parse_mem(ops[0])?;
            return Ok(Insn::Store {
                size,
                dst,
                off,
                src: Operand::Imm(parse_imm32(ops[1])?),
            });
        }
    }
    if let Some(rest) = m.strip_prefix("ldabs") {
        if let Some(size) = size_from_suffix(rest).filter(|s| *s != Size::DW) {
            expect_count(l, 1)?;
            return Ok(Insn::LoadAbs {
                size,
                imm: parse_imm32(ops[0])?,
            });
        }
    }
    if let Some(rest) = m.strip_prefix("ldind") {
        if let Some(size) = size_from_suffix(rest).filter(|s| *s != Size::DW) {
            expect_count(l, 2)?;
            return Ok(Insn::LoadInd {
                size,
                src: parse_reg(ops[0])?,
                imm: parse_imm32(ops[1])?,
            });
        }
    }
    let (base, width) = split_width(m);
    if base == "neg" {
        expect_count(l, 1)?;
        return Ok(Insn::Neg {
            width,
            dst: parse_reg(ops[0])?,
        });
    }
    if let Some(op) = alu_from_name(base) {
        expect_count(l, 2)?;
        return Ok(Insn::Alu {
            width,
            op,
            dst: parse_reg(ops[0])?,
            src: parse_operand(ops[1])?,
        });
    }
    if let Some(cond) = jmp_from_name(base) {
        expect_count(l, 3)?;
        return Ok(Insn::Jmp {
            width,
            cond,
            dst: parse_reg(ops[0])?,
            src: parse_operand(ops[1])?,
            off: target16(ops[2], l.pc, labels)?,
        });
    }
    Err(AsmErrorKind::UnknownMnemonic(m.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::insn::{decode, encode};

    fn check(src: &str) {
        let bytes = assemble_bytes(src).expect("assembles");
        let insns = decode(&bytes).expect("decodes");
        let text = crate::disasm::disasm(&insns, false);
        assert_eq!(
            assemble_bytes(&text).expect("re-assembles"),
            bytes,
            "{text}"
        );
    }

    #[test]
    fn labels_and_local_calls_resolve() {
        let insns = assemble("call local f\nexit\nf:\nmov %r0, 1\nexit").expect("ok");
        assert_eq!(insns[0], Insn::Call(CallTarget::Local(1)));
        check("start: mov %r0, 0\nja start\nlddw %r1, 0x100000000\njeq %r1, 0, -4\nexit");
    }

    #[test]
    fn every_syntax_form_round_trips() {
        check(
            "mov32 %r0, -1\nmovsx3264 %r1, %r0\nlock fetch add32 [%r10-8], %r1\nlock cmpxchg [%r10], %r2\n\
             be16 %r0\nbswap64 %r0\nldxsh %r0, [%r1+2]\nstdw [%r10-8], 0xffffffff\nja32 -3\n\
             lddw %r1, map_value(3, 16)\nlddw %r2, map_fd(4)\nldabsw 12\nldindb %r2, 3\ncall %r2\n\
             call kfunc 7\nsdiv %r0, %r2\nsmod32 %r0, 3\nneg32 %r3\nexit",
        );
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let kind = |s: &str| assemble(s).unwrap_err().kind;
        assert!(matches!(
            kind("mov32 %r0, 2147483648"),
            AsmErrorKind::OutOfRange { .. }
        ));
        assert!(matches!(
            kind("mov32 %r0, 0x100000000"),
            AsmErrorKind::OutOfRange { .. }
        ));
        assert!(matches!(
            kind("ldxb %r0, [%r1+0x10000]"),
            AsmErrorKind::OutOfRange { .. }
        ));
        assert!(matches!(
            kind("or %r0, %r50"),
            AsmErrorKind::InvalidRegister(_)
        ));
        assert!(matches!(kind("ja nowhere"), AsmErrorKind::UnknownLabel(_)));
        assert!(matches!(kind("lock"), AsmErrorKind::OperandCount { .. }));
        assert!(matches!(
            kind("ldxq %r0, %r1"),
            AsmErrorKind::UnknownMnemonic(_)
        ));
        assert!(matches!(
            kind("ldxb %r0, %r1"),
            AsmErrorKind::InvalidMemory(_)
        ));
        assert_eq!(assemble("# nothing").unwrap_err().kind, AsmErrorKind::Empty);
        let _ = encode(&[]);
    }
}
