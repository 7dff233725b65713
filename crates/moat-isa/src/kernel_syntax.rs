//! Instructions as the Linux kernel's verifier log and `bpftool prog dump xlated` print them
//! (`kernel/bpf/disasm.c`): `r2 = 0`, `r3 = *(u32 *)(r1 +4)`, `if r5 > r3 goto pc+5`,
//! `call bpf_map_lookup_elem#1`, each preceded in the log by its opcode byte, so that moat's
//! `verify --log` and the kernel's level-2 log can be compared line by line.

use crate::insn::{
    encode_one, AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Size, Width,
};

/// The opcode byte of `insn` (of its first slot for `lddw`).
pub fn opcode(insn: &Insn) -> u8 {
    encode_one(insn).0.code
}

fn reg(width: Width, r: crate::insn::Reg) -> String {
    match width {
        Width::W64 => format!("r{}", r.num()),
        Width::W32 => format!("w{}", r.num()),
    }
}

fn operand(width: Width, src: &Operand) -> String {
    match src {
        Operand::Reg(r) => reg(width, *r),
        Operand::Imm(i) => format!("{i}"),
    }
}

fn size(size: Size) -> &'static str {
    match size {
        Size::B => "u8",
        Size::H => "u16",
        Size::W => "u32",
        Size::DW => "u64",
    }
}

fn offset(off: i16) -> String {
    if off < 0 {
        format!("{off}")
    } else {
        format!("+{off}")
    }
}

fn alu_symbol(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "+=",
        AluOp::Sub => "-=",
        AluOp::Mul => "*=",
        AluOp::Div => "/=",
        AluOp::SDiv => "s/=",
        AluOp::Or => "|=",
        AluOp::And => "&=",
        AluOp::Lsh => "<<=",
        AluOp::Rsh => ">>=",
        AluOp::Mod => "%=",
        AluOp::SMod => "s%=",
        AluOp::Xor => "^=",
        AluOp::Mov | AluOp::MovSx(_) => "=",
        AluOp::Arsh => "s>>=",
    }
}

fn jmp_symbol(cond: JmpCond) -> &'static str {
    match cond {
        JmpCond::Eq => "==",
        JmpCond::Gt => ">",
        JmpCond::Ge => ">=",
        JmpCond::Set => "&",
        JmpCond::Ne => "!=",
        JmpCond::Sgt => "s>",
        JmpCond::Sge => "s>=",
        JmpCond::Lt => "<",
        JmpCond::Le => "<=",
        JmpCond::Slt => "s<",
        JmpCond::Sle => "s<=",
    }
}

fn pc_offset(off: i64) -> String {
    if off < 0 {
        format!("pc{off}")
    } else {
        format!("pc+{off}")
    }
}

/// `insn` in the kernel's syntax; `helper` names helper ids (`bpf_map_lookup_elem`) where it can.
pub fn disasm_kernel(insn: &Insn, helper: &dyn Fn(i32) -> Option<&'static str>) -> String {
    match *insn {
        Insn::Alu {
            width,
            op: AluOp::MovSx(bits),
            dst,
            src,
        } => format!(
            "{} = (s{}){}",
            reg(width, dst),
            bits.bits(),
            operand(width, &src)
        ),
        Insn::Alu {
            width,
            op,
            dst,
            src,
        } => format!(
            "{} {} {}",
            reg(width, dst),
            alu_symbol(op),
            operand(width, &src)
        ),
        Insn::Neg { width, dst } => format!("{} = -{}", reg(width, dst), reg(width, dst)),
        Insn::Endian { kind, bits, dst } => {
            let name = match kind {
                Endian::ToLe => "le",
                Endian::ToBe => "be",
                Endian::Swap => "bswap",
            };
            format!("r{} = {name}{bits} r{}", dst.num(), dst.num())
        }
        Insn::Load {
            size: sz,
            signed,
            dst,
            src,
            off,
        } => {
            let ty = if signed {
                size(sz).replace('u', "s")
            } else {
                size(sz).to_string()
            };
            format!("r{} = *({ty} *)(r{} {})", dst.num(), src.num(), offset(off))
        }
        Insn::Store {
            size: sz,
            dst,
            off,
            src,
        } => format!(
            "*({} *)(r{} {}) = {}",
            size(sz),
            dst.num(),
            offset(off),
            operand(Width::W64, &src)
        ),
        Insn::Atomic {
            size: sz,
            op,
            dst,
            off,
            src,
        } => {
            let bits = if sz == Size::DW { "64" } else { "" };
            let place = format!("({} *)(r{} {})", size(sz), dst.num(), offset(off));
            let s = match sz {
                Size::DW => format!("r{}", src.num()),
                _ => format!("w{}", src.num()),
            };
            let plain = |sym: &str| format!("lock *{place} {sym} {s}");
            let fetch = |name: &str| format!("{s} = atomic{bits}_fetch_{name}({place}, {s})");
            match op {
                AtomicOp::Add { fetch: false } => plain("+="),
                AtomicOp::Or { fetch: false } => plain("|="),
                AtomicOp::And { fetch: false } => plain("&="),
                AtomicOp::Xor { fetch: false } => plain("^="),
                AtomicOp::Add { fetch: true } => fetch("add"),
                AtomicOp::Or { fetch: true } => fetch("or"),
                AtomicOp::And { fetch: true } => fetch("and"),
                AtomicOp::Xor { fetch: true } => fetch("xor"),
                AtomicOp::Xchg => format!("{s} = atomic{bits}_xchg({place}, {s})"),
                AtomicOp::CmpXchg => {
                    let r0 = if sz == Size::DW { "r0" } else { "w0" };
                    format!("{r0} = atomic{bits}_cmpxchg({place}, {r0}, {s})")
                }
            }
        }
        Insn::LoadImm64 {
            dst,
            kind,
            imm,
            next_imm,
        } => {
            let value =
                (u64::from(next_imm.cast_unsigned()) << 32) | u64::from(imm.cast_unsigned());
            match kind {
                LddwKind::Imm => format!("r{} = {value:#x}", dst.num()),
                LddwKind::MapFd | LddwKind::MapIdx => format!("r{} = map[id:{imm}]", dst.num()),
                LddwKind::MapValue | LddwKind::MapIdxValue => {
                    format!("r{} = map[id:{imm}][0]+{next_imm}", dst.num())
                }
                LddwKind::VarAddr => format!("r{} = var[{imm}]", dst.num()),
                LddwKind::Code => format!("r{} = func pc{}", dst.num(), offset_pc(imm)),
            }
        }
        Insn::LoadAbs { size: sz, imm } => format!("r0 = *({} *)skb[{imm}]", size(sz)),
        Insn::LoadInd { size: sz, src, imm } => {
            format!("r0 = *({} *)skb[r{} + {imm}]", size(sz), src.num())
        }
        Insn::Ja { off, .. } => format!("goto {}", pc_offset(i64::from(off))),
        Insn::Jmp {
            width,
            cond,
            dst,
            src,
            off,
        } => format!(
            "if {} {} {} goto {}",
            reg(width, dst),
            jmp_symbol(cond),
            match src {
                Operand::Imm(i) => format!("{:#x}", i.cast_unsigned()),
                r => operand(width, &r),
            },
            pc_offset(i64::from(off))
        ),
        Insn::Call(CallTarget::Helper(id)) => match helper(id) {
            Some(name) => format!("call {name}#{id}"),
            None => format!("call #{id}"),
        },
        Insn::Call(CallTarget::Local(off)) => format!("call {}", pc_offset(i64::from(off))),
        Insn::Call(CallTarget::Kfunc(id)) => format!("call kernel-function#{id}"),
        Insn::CallX { dst } => format!("callx r{}", dst.num()),
        Insn::Exit => "exit".into(),
    }
}

fn offset_pc(imm: i32) -> String {
    if imm < 0 {
        format!("{imm}")
    } else {
        format!("+{imm}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(src: &str) -> Vec<String> {
        let bytes = crate::assemble_bytes(src).expect("assembles");
        crate::decode(&bytes)
            .expect("decodes")
            .into_iter()
            .map(|(_, i)| {
                format!(
                    "({:02x}) {}",
                    opcode(&i),
                    disasm_kernel(&i, &|id| (id == 1).then_some("bpf_map_lookup_elem"))
                )
            })
            .collect()
    }

    #[test]
    fn reads_like_the_kernels_log() {
        assert_eq!(
            k("mov %r2, 0
               ldxw %r3, [%r1+4]
               jgt %r5, %r3, +5
               stxdw [%r10-8], %r1
               add32 %r1, %r2
               call 1
               exit"),
            [
                "(b7) r2 = 0",
                "(61) r3 = *(u32 *)(r1 +4)",
                "(2d) if r5 > r3 goto pc+5",
                "(7b) *(u64 *)(r10 -8) = r1",
                "(0c) w1 += w2",
                "(85) call bpf_map_lookup_elem#1",
                "(95) exit",
            ]
        );
    }
}
