//! Machine code for probes, made with `iced-x86` (no `unsafe`: this module only produces bytes).
//!
//! A probe's *trampoline* saves the thread's registers into a `struct pt_regs` (and `xmm0`-`xmm15`
//! beside it) below the red zone, calls the probe's handler with it, restores everything, runs the
//! instructions the patch displaced — relocated by `iced-x86`'s block encoder, so RIP-relative
//! operands and branches still reach what they reached — and jumps back behind them. The *return
//! trampoline* is where hijacked return addresses lead (uretprobes): it saves the registers, asks
//! the return handler for the real return address and returns there.

use iced_x86::code_asm::*;
use iced_x86::{BlockEncoderOptions, Decoder, DecoderOptions, FlowControl, Instruction};

/// Bytes the `jmp rel32` of a rewritten probe takes.
pub const JMP_LEN: usize = 5;
/// Size of `struct pt_regs` on x86-64.
pub const PT_REGS_SIZE: usize = 168;
/// Bytes the trampolines save below the red zone: `pt_regs`, then `xmm0`-`xmm15`.
pub const FRAME: i32 = (PT_REGS_SIZE + 16 * 16 + 8) as i32;
/// The x86-64 red zone, which code at a probed address may be using.
const RED_ZONE: i32 = 128;
/// The most bytes a trampoline takes.
pub const MAX_TRAMPOLINE: usize = 1024;

/// `pt_regs` offsets of the general registers, in the kernel's order.
const SAVED: [(AsmRegister64, i32); 15] = [
    (r15, 0),
    (r14, 8),
    (r13, 16),
    (r12, 24),
    (rbp, 32),
    (rbx, 40),
    (r11, 48),
    (r10, 56),
    (r9, 64),
    (r8, 72),
    (rax, 80),
    (rcx, 88),
    (rdx, 96),
    (rsi, 104),
    (rdi, 112),
];
/// `pt_regs.flags`.
const FLAGS: i32 = 144;
const XMM: [AsmRegisterXmm; 16] = [
    xmm0, xmm1, xmm2, xmm3, xmm4, xmm5, xmm6, xmm7, xmm8, xmm9, xmm10, xmm11, xmm12, xmm13, xmm14,
    xmm15,
];

/// Instructions at a probed address that the patch displaces.
#[derive(Debug, Clone)]
pub struct Displaced {
    /// The decoded instructions, with their original addresses.
    pub instrs: Vec<Instruction>,
    /// Their total length.
    pub len: usize,
}

/// Why the code at an address cannot be displaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisplaceError {
    /// Bytes that do not decode.
    Invalid(u64),
    /// The code ends (a return, an indirect jump, a trap) before `min` bytes.
    TooShort,
}

/// Decodes whole instructions at `addr` (`code` holds the bytes from there) until they cover at
/// least `min` bytes; the last one may transfer control, none before it may.
pub fn displace(addr: u64, code: &[u8], min: usize) -> Result<Displaced, DisplaceError> {
    let mut decoder = Decoder::with_ip(64, code, addr, DecoderOptions::NONE);
    let mut instrs = Vec::new();
    let mut len = 0;
    while len < min {
        if !decoder.can_decode() {
            return Err(DisplaceError::TooShort);
        }
        let insn = decoder.decode();
        if insn.is_invalid() {
            return Err(DisplaceError::Invalid(insn.ip()));
        }
        len += insn.len();
        let ends = !matches!(
            insn.flow_control(),
            FlowControl::Next | FlowControl::Call | FlowControl::ConditionalBranch
        );
        instrs.push(insn);
        if ends && len < min {
            return Err(DisplaceError::TooShort);
        }
    }
    Ok(Displaced { instrs, len })
}

/// Whether any direct branch of the function `code` (at `func`) lands strictly inside
/// `(lo, hi)`: there, displaced bytes would be entered halfway.
pub fn branch_into(func: u64, code: &[u8], lo: u64, hi: u64) -> bool {
    let mut decoder = Decoder::with_ip(64, code, func, DecoderOptions::NONE);
    while decoder.can_decode() {
        let insn = decoder.decode();
        if matches!(
            insn.flow_control(),
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        ) {
            let target = insn.near_branch_target();
            if target > lo && target < hi {
                return true;
            }
        }
    }
    false
}

/// `jmp rel32` at `from` to `to` (which must be within reach).
pub fn jmp_rel32(from: u64, to: u64) -> Option<[u8; JMP_LEN]> {
    let rel = i32::try_from((to as i64).wrapping_sub(from as i64 + JMP_LEN as i64)).ok()?;
    let r = rel.to_le_bytes();
    Some([0xe9, r[0], r[1], r[2], r[3]])
}

fn save(a: &mut CodeAssembler, below: i32) -> Result<(), IcedError> {
    a.lea(rsp, ptr(rsp - below))?;
    for (reg, off) in SAVED {
        a.mov(qword_ptr(rsp + off), reg)?;
    }
    a.pushfq()?;
    a.pop(qword_ptr(rsp + FLAGS))?;
    a.cld()?;
    for (i, x) in XMM.into_iter().enumerate() {
        a.movdqu(xmmword_ptr(rsp + (PT_REGS_SIZE as i32 + 16 * i as i32)), x)?;
    }
    Ok(())
}

/// Restores what `save` saved; the flags only with `flags` (`popfq` is slow, and at a function's
/// return they are dead: no caller keeps flags live across a call).
fn restore(a: &mut CodeAssembler, flags: bool) -> Result<(), IcedError> {
    for (i, x) in XMM.into_iter().enumerate() {
        a.movdqu(x, xmmword_ptr(rsp + (PT_REGS_SIZE as i32 + 16 * i as i32)))?;
    }
    if flags {
        a.push(qword_ptr(rsp + FLAGS))?;
        a.popfq()?;
    }
    for (reg, off) in SAVED {
        a.mov(reg, qword_ptr(rsp + off))?;
    }
    Ok(())
}

/// Calls `handler(rdi = arg, rsi = &pt_regs)` on a 16-byte aligned stack; `rbx` keeps the frame.
fn call(a: &mut CodeAssembler, handler: u64, arg: u64) -> Result<(), IcedError> {
    a.mov(rbx, rsp)?;
    a.and(rsp, -16)?;
    a.mov(rdi, arg)?;
    a.mov(rsi, rbx)?;
    a.mov(rax, handler)?;
    a.call(rax)?;
    a.mov(rsp, rbx)?;
    Ok(())
}

/// A probe's trampoline at address `at`: saves the registers, calls `handler(probe, &pt_regs)`,
/// restores them, runs `displaced` (relocated) and jumps to `resume`. Returns the code and, for
/// each displaced instruction after the first, where its relocated copy starts (a thread stopped
/// between displaced instructions goes on there).
pub fn trampoline(
    at: u64,
    handler: u64,
    probe: u64,
    displaced: &[Instruction],
    resume: u64,
) -> Result<(Vec<u8>, Vec<u64>), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    save(&mut a, RED_ZONE + FRAME)?;
    call(&mut a, handler, probe)?;
    restore(&mut a, true)?;
    a.lea(rsp, ptr(rsp + (RED_ZONE + FRAME)))?;
    let mut labels = Vec::new();
    for (i, insn) in displaced.iter().enumerate() {
        if i > 0 {
            let mut label = a.create_label();
            a.set_label(&mut label)?;
            labels.push(label);
        }
        a.add_instruction(*insn)?;
    }
    a.jmp(resume)?;
    let result = a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let interior = labels
        .iter()
        .map(|l| result.label_ip(l))
        .collect::<Result<Vec<u64>, IcedError>>()?;
    Ok((result.inner.code_buffer, interior))
}

/// A system call site's trampoline at `at`: runs `displaced` (relocated; the last instruction is
/// the `syscall`), calling `enter(site, &pt_regs)` just before the `syscall` and
/// `exit(site, &pt_regs)` just after it (each only if given), then jumps to `resume`.
pub fn syscall_trampoline(
    at: u64,
    enter: Option<u64>,
    exit: Option<u64>,
    site: u64,
    displaced: &[Instruction],
    resume: u64,
) -> Option<(Vec<u8>, Vec<u64>)> {
    let (syscall, before) = displaced.split_last()?;
    syscall_code(at, enter, exit, site, before, syscall, resume).ok()
}

fn syscall_code(
    at: u64,
    enter: Option<u64>,
    exit: Option<u64>,
    site: u64,
    before: &[Instruction],
    syscall: &Instruction,
    resume: u64,
) -> Result<(Vec<u8>, Vec<u64>), IcedError> {
    let mut a = CodeAssembler::new(64)?;
    let mut labels = Vec::new();
    for (i, insn) in before.iter().enumerate() {
        if i > 0 {
            let mut label = a.create_label();
            a.set_label(&mut label)?;
            labels.push(label);
        }
        a.add_instruction(*insn)?;
    }
    for (handler, insn) in [(enter, Some(syscall)), (exit, None)] {
        if let Some(handler) = handler {
            save(&mut a, RED_ZONE + FRAME)?;
            call(&mut a, handler, site)?;
            restore(&mut a, true)?;
            a.lea(rsp, ptr(rsp + (RED_ZONE + FRAME)))?;
        }
        if let Some(insn) = insn {
            // A thread stopped at the `syscall` itself goes on here (its enter programs skipped).
            let mut label = a.create_label();
            a.set_label(&mut label)?;
            labels.push(label);
            a.add_instruction(*insn)?;
        }
    }
    a.jmp(resume)?;
    let result = a.assemble_options(at, BlockEncoderOptions::RETURN_NEW_INSTRUCTION_OFFSETS)?;
    let interior = labels
        .iter()
        .map(|l| result.label_ip(l))
        .collect::<Result<Vec<u64>, IcedError>>()?;
    Ok((result.inner.code_buffer, interior))
}

/// Where a system call site can be rewritten: `mov eax, NR` and the instructions up to and
/// including the `syscall` after it, with no control flow in between.
#[derive(Debug, Clone)]
pub struct SyscallSite {
    /// The system call number.
    pub nr: u32,
    /// The instructions from the `mov` to the `syscall`.
    pub displaced: Displaced,
}

/// Finds the rewritable system call sites in `code` (at `base`), decoding it linearly, and drops
/// those into whose instructions (past the first) any direct branch of `code` lands.
pub fn syscall_sites(base: u64, code: &[u8]) -> Vec<SyscallSite> {
    let mut decoder = Decoder::with_ip(64, code, base, DecoderOptions::NONE);
    let mut targets = std::collections::HashSet::new();
    let mut sites = Vec::new();
    // The instructions since the last `mov eax, imm32` with no control flow after it.
    let mut run: Vec<Instruction> = Vec::new();
    let mut nr: Option<u32> = None;
    while decoder.can_decode() {
        let insn = decoder.decode();
        if insn.is_invalid() {
            run.clear();
            nr = None;
            continue;
        }
        let flow = insn.flow_control();
        if matches!(
            flow,
            FlowControl::UnconditionalBranch | FlowControl::ConditionalBranch | FlowControl::Call
        ) {
            targets.insert(insn.near_branch_target());
        }
        if insn.mnemonic() == iced_x86::Mnemonic::Syscall {
            if let Some(n) = nr.filter(|_| !run.is_empty()) {
                run.push(insn);
                let len = run.iter().map(Instruction::len).sum();
                if len >= JMP_LEN {
                    sites.push(SyscallSite {
                        nr: n,
                        displaced: Displaced {
                            instrs: std::mem::take(&mut run),
                            len,
                        },
                    });
                }
            }
            run.clear();
            nr = None;
            continue;
        }
        let is_mov_eax = insn.code() == iced_x86::Code::Mov_r32_imm32
            && insn.op0_register() == iced_x86::Register::EAX;
        if is_mov_eax {
            run.clear();
            nr = Some(insn.immediate32());
            run.push(insn);
            continue;
        }
        // Anything that changes control flow or writes eax/rax ends the run.
        let writes_rax = {
            let mut info = iced_x86::InstructionInfoFactory::new();
            info.info(&insn).used_registers().iter().any(|r| {
                r.register().full_register() == iced_x86::Register::RAX
                    && matches!(
                        r.access(),
                        iced_x86::OpAccess::Write
                            | iced_x86::OpAccess::CondWrite
                            | iced_x86::OpAccess::ReadWrite
                            | iced_x86::OpAccess::ReadCondWrite
                    )
            })
        };
        if flow != FlowControl::Next || writes_rax || run.len() > 8 {
            run.clear();
            nr = None;
        } else if nr.is_some() {
            run.push(insn);
        }
    }
    sites.retain(|s| {
        let start = s.displaced.instrs[0].ip();
        let end = start + s.displaced.len as u64;
        !targets.iter().any(|&t| t > start && t < end)
    });
    sites
}

/// The return trampoline at `at`: hijacked returns land here with the function's results in
/// `rax`/`rdx`; it saves the registers, calls `handler(0, &pt_regs)`, which returns the real
/// return address, restores the registers and returns there.
pub fn return_trampoline(at: u64, handler: u64) -> Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(64)?;
    // One slot above the frame (where the hijacked return address was) for the real one.
    save(&mut a, 8 + FRAME)?;
    call(&mut a, handler, 0)?;
    a.mov(qword_ptr(rsp + FRAME), rax)?;
    restore(&mut a, false)?;
    // Pop the real return address and jump to it rather than `ret`: the function's own `ret`
    // (to here) already used the return-stack entry of its call, and a second `ret` would
    // mispredict and leave every return of the callers up the chain predicted one frame off.
    // The word stays readable below `rsp` (signal frames skip the red zone).
    a.lea(rsp, ptr(rsp + (FRAME + 8)))?;
    a.jmp(qword_ptr(rsp - 8))?;
    a.assemble(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displaces_whole_instructions() {
        // push rbp; mov rbp, rsp; sub rsp, 0x10; ret
        let code = [0x55, 0x48, 0x89, 0xe5, 0x48, 0x83, 0xec, 0x10, 0xc3];
        let d = displace(0x1000, &code, JMP_LEN).unwrap();
        assert_eq!(d.instrs.len(), 3);
        assert_eq!(d.len, 8);
        // A function that returns first is too short.
        assert_eq!(
            displace(0x1000, &[0x31, 0xc0, 0xc3, 0x90, 0x90, 0x90], JMP_LEN).unwrap_err(),
            DisplaceError::TooShort
        );
    }

    #[test]
    fn sees_branches_into_the_window() {
        // 0: xor eax,eax (2); 2: nop (1); 3: nop; 4: nop; 5: jmp 2 (eb f b)
        let code = [0x31, 0xc0, 0x90, 0x90, 0x90, 0xeb, 0xfb];
        assert!(branch_into(0x1000, &code, 0x1000, 0x1005));
        assert!(!branch_into(0x1000, &code, 0x1000, 0x1002));
    }

    #[test]
    fn finds_syscall_sites_and_skips_entered_ones() {
        // mov eax, 0x101; mov rdi, rbx; syscall; ret
        let site = [0xb8, 0x01, 0x01, 0, 0, 0x48, 0x89, 0xdf, 0x0f, 0x05, 0xc3];
        let found = syscall_sites(0x1000, &site);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].nr, 257);
        assert_eq!(found[0].displaced.len, 10);
        // Something jumps to the `syscall`: not rewritable.
        let mut entered = site.to_vec();
        entered.extend([0xeb, 0xf5]); // jmp 0x1008 (from 0x100b + 2 - 11)
        assert!(syscall_sites(0x1000, &entered).is_empty());
        // eax changed between the mov and the syscall: not a site.
        let changed = [0xb8, 0x01, 0x01, 0, 0, 0x31, 0xc0, 0x0f, 0x05];
        assert!(syscall_sites(0x1000, &changed).is_empty());
    }

    #[test]
    fn relocates_rip_relative_operands() {
        // mov rax, [rip + 0x100] at 0x40_0000, moved to 0x40_1000: the operand still names 0x40_0107.
        let code = [0x48, 0x8b, 0x05, 0x00, 0x01, 0x00, 0x00];
        let d = displace(0x40_0000, &code, JMP_LEN).unwrap();
        let (out, _) = trampoline(0x40_1000, 0x50_0000, 0, &d.instrs, 0x40_0007).unwrap();
        let mut dec = Decoder::with_ip(64, &out, 0x40_1000, DecoderOptions::NONE);
        let found = dec
            .iter()
            .any(|i| i.is_ip_rel_memory_operand() && i.ip_rel_memory_address() == 0x40_0107);
        assert!(found);
    }
}
