//! Which memory a sampled thread was waiting on: the instruction at a sample's `ip`, or the one
//! just before it (the clock interrupt usually lands one instruction after a stalled load), and
//! the address it accesses, computed from the sample's registers.
//!
//! The registers are those at the interrupt, after the previous instruction retired, so a load
//! that overwrote its own index or base register (`mov rsi, [rbp + rsi*8]`, a pointer chase) is
//! seen through the new value: the address then names another element of the same object (the
//! next node of a list, another slot of an array), which classifies the same way.

use iced_x86::{Code, Decoder, DecoderOptions, InstructionInfoFactory, OpAccess, Register};
use moat_kernel::sampling::UserRegs;

/// The longest x86 instruction.
const MAX_LEN: usize = 15;

/// Code bytes around a sample: `MAX_LEN` before `ip` and `MAX_LEN` from it.
#[derive(Debug, Clone)]
pub struct Window {
    /// The address of `bytes[0]`.
    pub start: u64,
    /// The bytes (fewer where the process's memory ends).
    pub bytes: Vec<u8>,
}

impl Window {
    /// The window for `ip`: where to read it from.
    pub fn around(ip: u64) -> (u64, usize) {
        (ip.saturating_sub(MAX_LEN as u64), 2 * MAX_LEN)
    }
}

/// A memory access found at a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The instruction's address.
    pub ip: u64,
    /// The address it reads or writes.
    pub address: u64,
    /// Bytes accessed.
    pub size: u64,
}

fn reg_value(regs: &UserRegs, reg: Register) -> Option<u64> {
    match reg {
        Register::RIP => return Some(regs.rip),
        // Flat in 64-bit mode (FS and GS, thread-local storage, are filtered out before).
        Register::ES | Register::CS | Register::SS | Register::DS => return Some(0),
        _ => {}
    }
    let full = reg.full_register();
    let index = match full {
        Register::RAX => 0,
        Register::RCX => 1,
        Register::RDX => 2,
        Register::RBX => 3,
        Register::RSP => 4,
        Register::RBP => 5,
        Register::RSI => 6,
        Register::RDI => 7,
        r if (Register::R8..=Register::R15).contains(&r) => {
            8 + (r as usize - Register::R8 as usize)
        }
        _ => return None,
    };
    let v = regs.gprs[index];
    Some(match reg.size() {
        8 => v,
        4 => v & 0xffff_ffff,
        2 => v & 0xffff,
        _ => v & 0xff,
    })
}

/// The data access of the instruction decoded at `at` (inside `w`), if it is one and ends exactly
/// at `end` (when given).
fn access_at(w: &Window, at: u64, end: Option<u64>, regs: &UserRegs) -> Option<Access> {
    let off = usize::try_from(at.checked_sub(w.start)?).ok()?;
    let bytes = w.bytes.get(off..)?;
    let mut decoder = Decoder::with_ip(64, bytes, at, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() || end.is_some_and(|e| insn.next_ip() != e) {
        return None;
    }
    if matches!(insn.code(), Code::Nopw | Code::Nopd | Code::Nopq) {
        return None;
    }
    let mut factory = InstructionInfoFactory::new();
    let info = factory.info(&insn);
    info.used_memory()
        .iter()
        .filter(|m| {
            !matches!(m.access(), OpAccess::None | OpAccess::NoMemAccess)
                && !matches!(m.segment(), Register::FS | Register::GS)
        })
        .find_map(|m| {
            let address = m.virtual_address(0, |r, _, _| reg_value(regs, r))?;
            Some(Access {
                ip: at,
                address,
                size: m.memory_size().size() as u64,
            })
        })
}

/// Where the instruction ending at `ip` starts. x86 code cannot be decoded backwards, but
/// decoding resynchronises within a few instructions: from every start up to `MAX_LEN` bytes
/// before `ip`, decode forward; the starts whose sequence lands exactly on `ip` vote for their
/// last instruction, and the most voted (the longer on a tie) wins.
fn previous(w: &Window, ip: u64) -> Option<u64> {
    let mut votes: Vec<(u64, u32)> = Vec::new();
    for back in (1..=MAX_LEN as u64).rev() {
        let Some(start) = ip.checked_sub(back).filter(|s| *s >= w.start) else {
            continue;
        };
        let off = (start - w.start) as usize;
        let Some(bytes) = w.bytes.get(off..) else {
            continue;
        };
        let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
        let mut last = start;
        while decoder.can_decode() && decoder.ip() < ip {
            last = decoder.ip();
            if decoder.decode().is_invalid() {
                break;
            }
        }
        if decoder.ip() == ip {
            match votes.iter_mut().find(|(at, _)| *at == last) {
                Some((_, n)) => *n += 1,
                None => votes.push((last, 1)),
            }
        }
    }
    votes
        .into_iter()
        .max_by_key(|&(at, n)| (n, std::cmp::Reverse(at)))
        .map(|(at, _)| at)
}

/// The memory access the thread was most likely waiting on at a sample: the instruction ending at
/// `ip` ([`previous`]) if it accesses memory, else the one at `ip`.
pub fn access(w: &Window, ip: u64, regs: &UserRegs) -> Option<Access> {
    match previous(w, ip).and_then(|at| access_at(w, at, Some(ip), regs)) {
        Some(a) => Some(a),
        None => access_at(w, ip, None, regs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs(f: impl FnOnce(&mut [u64; 16])) -> UserRegs {
        let mut gprs = [0u64; 16];
        f(&mut gprs);
        UserRegs { gprs, rip: 0 }
    }

    #[test]
    fn finds_the_load_before_the_sampled_instruction() {
        // 10d8: mov rsi, [rbp + rsi*8]; 10dd: sub rax, 1; 10e1: jne 10d8 (the chase of the docs).
        let code = [
            0x48, 0x8b, 0x74, 0xf5, 0x00, 0x48, 0x83, 0xe8, 0x01, 0x75, 0xf5,
        ];
        let mut bytes = vec![0x90; 15 - 5];
        bytes.extend(code);
        let w = Window {
            start: 0x10dd - 15,
            bytes,
        };
        let r = regs(|g| {
            g[5] = 0x7000_0000; // rbp
            g[6] = 3; // rsi
        });
        let a = access(&w, 0x10dd, &r).expect("the load");
        assert_eq!(
            a,
            Access {
                ip: 0x10d8,
                address: 0x7000_0018,
                size: 8
            }
        );
    }

    #[test]
    fn lea_and_nops_access_nothing_and_tls_is_skipped() {
        // lea rax, [rbx + 8]; nopw [rax + rax]; mov rax, fs:[0x28]
        for code in [
            &[0x48, 0x8d, 0x43, 0x08][..],
            &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
            &[0x64, 0x48, 0x8b, 0x04, 0x25, 0x28, 0x00, 0x00, 0x00],
        ] {
            let ip = 0x2000 + code.len() as u64;
            let mut bytes = vec![0xcc; 15 - code.len()];
            bytes.extend(code);
            bytes.extend([0xc3; 15]); // ret: no data access at ip either... ret reads the stack
            let w = Window {
                start: ip - 15,
                bytes,
            };
            let found = access(&w, ip, &regs(|g| g[4] = 0x7fff_0000));
            // Only the `ret` at ip (a stack read) may be found, never the instruction before.
            assert!(
                found.is_none_or(|a| a.ip == ip && a.address == 0x7fff_0000),
                "{code:x?}: {found:?}"
            );
        }
    }

    #[test]
    fn sub_registers_address_with_their_width() {
        // mov eax, [ecx*4 + 0x100] (addr32 prefix)
        let code = [0x67, 0x8b, 0x04, 0x8d, 0x00, 0x01, 0x00, 0x00];
        let ip = 0x3000 + code.len() as u64;
        let mut bytes = vec![0x90; 15 - code.len()];
        bytes.extend(code);
        let w = Window {
            start: ip - 15,
            bytes,
        };
        let a = access(&w, ip, &regs(|g| g[1] = 0xffff_ffff_0000_0002)).expect("load");
        assert_eq!(a.address, 0x108);
        assert_eq!(a.size, 4);
    }
}
