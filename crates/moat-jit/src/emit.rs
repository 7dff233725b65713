//! The code generator: one pass over a checked [`Program`], emitting x86-64 through `dynasmrt`.
//!
//! eBPF registers live in fixed x86 registers, as in the Linux kernel's JIT (`r0`=rax, `r1`=rdi,
//! `r2`=rsi, `r3`=rdx, `r4`=rcx, `r5`=r8, `r6`=rbx, `r7`=r13, `r8`=r14, `r9`=r15, `r10`=rbp), so helper
//! arguments are already where the System V ABI wants them. `r12` holds the instruction budget left;
//! `r9`, `r10` and `r11` are scratch. The eBPF stack is a separate area of [`crate::run::STACK_SIZE`]
//! bytes aligned to its size, with the run context ([`crate::run::JitCtx`]) right above its top: the
//! context's address is `((rbp - 1) | (STACK_SIZE - 1)) + 1` from any frame, so no register is spent
//! on it.
//!
//! The code of a program is position independent (absolute addresses only of Rust functions and of
//! the program's own heap tables), laid out as: the entry trampoline, the instructions, the cold
//! stubs (failed checks, budget exhaustion) and the shared error routines.
//!
//! This module only produces bytes; it contains no `unsafe`.

use crate::run::{
    off, ERR_BAD_TARGET, ERR_BUDGET, ERR_CALL_DEPTH, ERR_INTERRUPTED, ERR_LDABS_ZERO, ERR_PENDING,
    STACK_SIZE,
};
use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use moat_exec::{LinkError, Linked, CODE_ADDRESS_TAG};
use moat_isa::{
    AluOp, AtomicOp, CallTarget, Endian, Insn, JmpCond, LddwKind, Operand, Program, Reg, Size,
    SxBits, Width,
};
use moat_verify::ProvenAccesses;

type Asm = VecAssembler<X64Relocation>;

const RAX: u8 = 0;
const RCX: u8 = 1;
const RBP: u8 = 5;
const R11: u8 = 11;

/// x86 register of each eBPF register.
const MAP: [u8; 11] = [0, 7, 6, 2, 1, 8, 3, 13, 14, 15, 5];

fn x(r: Reg) -> u8 {
    MAP[r.index() % 11]
}

/// Bytes of one eBPF stack frame.
const FRAME: i32 = moat_exec::STACK_FRAME_SIZE as i32;

/// Addresses of the Rust functions generated code calls, and whether the code is confined.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Thunks {
    /// `jit_call`: helper calls and `callx` to helper ids.
    pub call: u64,
    /// `jit_check`: the complete memory check.
    pub check: u64,
    /// `jit_poll`: a polling point found the interrupt flag set (the thread's poll hook decides
    /// whether the run goes on).
    pub poll: u64,
    /// `jit_raise`: a raised loop's header ([`crate::raise`]).
    pub raise: u64,
    /// Code for confined runs ([`crate::confine`]): the trampoline switches to the run's native
    /// stack and PKRU on entry and back to the host's on exit, and every call into Rust switches to
    /// the host's stack and PKRU and back.
    pub confined: bool,
}

/// `wrpkru`: PKRU = `eax` (`ecx` and `edx` must be 0).
const WRPKRU: [u8; 3] = [0x0f, 0x01, 0xef];

/// The product of [`compile`]: position-independent code and what the run time needs to interpret it.
pub(crate) struct Compiled {
    /// The machine code.
    pub code: Vec<u8>,
    /// Code offset of each slot's instruction (`u32::MAX` for the second slot of `lddw`).
    pub slot_offsets: Vec<u32>,
    /// For each basic block, the slot of each of its instructions (to name the instruction where the
    /// budget ran out).
    pub blocks: Vec<Vec<usize>>,
    /// Offset of the end of the instructions (start of the cold code).
    pub body_end: u32,
    /// Offset of the first instruction (the end of the entry trampoline).
    pub body_start: u32,
    /// Offset of the fault landing: where the fault handler resumes generated code that the
    /// hardware stopped ([`crate::fault`]).
    pub landing: u32,
    /// What the code's direct helper calls ([`moat_exec::DirectCall`]) need kept alive.
    pub keep: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

/// A stub in the cold section.
enum Cold {
    /// A memory check that failed its inline fast path.
    Mem {
        entry: DynamicLabel,
        back: DynamicLabel,
        info: u64,
        len: i32,
        /// Whether the inline path already checked the stack window.
        stack_done: bool,
        atomic: bool,
        /// `Some((base, off))` when the inline path checked the base register only: the stub
        /// computes the address (`r11 = base + off`) first.
        address: Option<(u8, i32)>,
    },
    /// The budget ran out at the entry of block `block` of `n` instructions.
    Budget {
        entry: DynamicLabel,
        block: u32,
        n: i32,
    },
    /// A polling point found the interrupt flag set: ask the thread's poll hook, then go on at
    /// `back` or stop with `Interrupted` at `pc`.
    Poll {
        entry: DynamicLabel,
        back: DynamicLabel,
        pc: u32,
    },
    /// A static error at `pc` (call depth).
    Error {
        entry: DynamicLabel,
        kind: u64,
        pc: u32,
    },
    /// `callx` to a value that is no function: the register holds the target.
    BadTarget {
        entry: DynamicLabel,
        pc: u32,
        reg: u8,
    },
}

struct Emitter<'a> {
    asm: Asm,
    labels: Vec<DynamicLabel>,
    cold: Vec<Cold>,
    thunks: Thunks,
    /// Address of the program's slot -> native address table.
    table: u64,
    slots: u64,
    proofs: &'a ProvenAccesses,
    /// Under software fault isolation: where proven accesses are confined to.
    sfi: Option<&'a crate::Sfi>,
    /// Under software fault isolation: the zone each eBPF register was found in by a check earlier
    /// in the current basic block, while the register has not been written since.
    zone_checked: [Option<crate::Zone>; 11],
    /// Whether the code counts an instruction budget in `r12`; otherwise `r12` holds the run
    /// context for the whole run (so no register is spent on it where no budget is counted).
    count_budget: bool,
    /// Whether loop back-edges and calls poll the run's interrupt flag.
    polling: bool,
    raise: DynamicLabel,
    check_tramp: DynamicLabel,
    poll_tramp: DynamicLabel,
    call_status: DynamicLabel,
    ldabs_zero: DynamicLabel,
    unwind: DynamicLabel,
    landing: DynamicLabel,
    /// Raised loops: the latch's slot and the label of the header's own code (after the call to
    /// the plan), where the back-edge goes so that only entries from outside run the plan.
    back_edges: Vec<(usize, DynamicLabel)>,
    /// What direct helper calls need kept alive.
    keep: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

/// Basic blocks: leaders are the entry, every branch or call target, code addresses and the
/// instruction after any jump, call or exit. Returns the block index of each instruction (`None` if
/// it does not start a block) and each block's instruction slots.
fn blocks(program: &Program) -> (Vec<Option<u32>>, Vec<Vec<usize>>) {
    let insns = program.insns();
    let mut leader = vec![false; insns.len()];
    if let Some(first) = leader.first_mut() {
        *first = true;
    }
    let mut mark = |slot: i64| {
        if let Some(i) = usize::try_from(slot)
            .ok()
            .and_then(|s| program.index_of_slot(s))
        {
            leader[i] = true;
        }
    };
    for (i, &(pc, insn)) in insns.iter().enumerate() {
        if let Some(t) = insn.branch_target(pc) {
            mark(t);
        }
        if let Insn::LoadImm64 {
            kind: LddwKind::Code,
            imm,
            ..
        } = insn
        {
            mark(pc as i64 + 1 + i64::from(imm));
        }
        if matches!(
            insn,
            Insn::Ja { .. } | Insn::Jmp { .. } | Insn::Call(_) | Insn::CallX { .. } | Insn::Exit
        ) {
            if let Some(&(next, _)) = insns.get(i + 1) {
                mark(next as i64);
            }
        }
    }
    let mut ids = vec![None; insns.len()];
    let mut list: Vec<Vec<usize>> = Vec::new();
    for (i, &(pc, _)) in insns.iter().enumerate() {
        if leader[i] || list.is_empty() {
            ids[i] = Some(list.len() as u32);
            list.push(Vec::new());
        }
        if let Some(b) = list.last_mut() {
            b.push(pc);
        }
    }
    (ids, list)
}

/// A raised loop as the code at its header needs it.
pub(crate) struct RaisedHeader {
    /// Slot of the header.
    pub header: usize,
    /// Slot of the latch.
    pub latch: usize,
    /// The short-loop check: the loop's distance from its bound and the fewest elements worth
    /// the plan's call ([`crate::CodeOptions::raise_min_elements`]); `None`: always call it.
    pub short: Option<(moat_raise::Distance, u32)>,
}

/// Compiles `linked`. `proofs` say which memory accesses the verifier proved in bounds; without
/// `sfi` such loads and stores carry no run-time check (atomics keep theirs, for alignment),
/// with it they are checked against the zones of the program's domain inline and, failing that,
/// completely (see [`crate::Sfi`]). `table` is the address the slot table will live at (filled by
/// the caller once the code is placed). `raised` are the header and latch slots of raised loops,
/// by index ([`crate::raise`]).
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one compilation, passed once"
)]
pub(crate) fn compile(
    linked: &Linked,
    proofs: &ProvenAccesses,
    sfi: Option<&crate::Sfi>,
    count_budget: bool,
    polling: bool,
    thunks: Thunks,
    table: u64,
    raised: &[RaisedHeader],
) -> Result<Compiled, LinkError> {
    let program = linked.program();
    let insns = program.insns();
    let mut asm = Asm::new_with_capacity(0, insns.len() * 24 + 512, 0, 0, insns.len() + 64, 0, 0);
    let labels: Vec<DynamicLabel> = insns.iter().map(|_| asm.new_dynamic_label()).collect();
    let raise = asm.new_dynamic_label();
    let check_tramp = asm.new_dynamic_label();
    let poll_tramp = asm.new_dynamic_label();
    let call_status = asm.new_dynamic_label();
    let ldabs_zero = asm.new_dynamic_label();
    let unwind = asm.new_dynamic_label();
    let landing = asm.new_dynamic_label();
    let mut e = Emitter {
        asm,
        labels,
        cold: Vec::new(),
        thunks,
        table,
        slots: program.slots() as u64,
        proofs,
        sfi,
        zone_checked: [None; 11],
        count_budget,
        polling,
        raise,
        check_tramp,
        poll_tramp,
        call_status,
        ldabs_zero,
        unwind,
        landing,
        back_edges: Vec::new(),
        keep: Vec::new(),
    };
    e.trampoline();
    let body_start = e.asm.offset().0 as u32;
    let (block_of, block_list) = blocks(program);
    for (i, &(pc, insn)) in insns.iter().enumerate() {
        let label = e.labels[i];
        dynasm!(e.asm ; .arch x64 ; =>label);
        if let Some(index) = raised.iter().position(|r| r.header == pc) {
            let body = e.asm.new_dynamic_label();
            if let Some((distance, min)) = raised[index].short {
                e.short_loop_check(distance, min, body);
            }
            e.raise_hook(pc, index, body);
            dynasm!(e.asm ; .arch x64 ; =>body);
            e.back_edges.push((raised[index].latch, body));
        }
        if let Some(b) = block_of[i] {
            e.zone_checked = [None; 11];
            if count_budget {
                let n = block_list.get(b as usize).map_or(0, Vec::len);
                e.budget(b, n);
            }
        }
        e.insn(linked, pc, insn)?;
        for r in written_registers(insn) {
            if let Some(c) = e.zone_checked.get_mut(r) {
                *c = None;
            }
        }
    }
    let body_end = e.asm.offset().0 as u32;
    e.cold_code();
    e.shared();
    let slot_label: Vec<Option<usize>> = (0..program.slots())
        .map(|s| program.index_of_slot(s))
        .collect();
    let Emitter {
        asm,
        labels,
        landing,
        keep,
        ..
    } = e;
    let landing = asm
        .labels()
        .resolve_dynamic(landing)
        .map_or(u32::MAX, |o| o.0 as u32);
    let offsets: Vec<u32> = slot_label
        .iter()
        .map(|i| {
            i.and_then(|i| labels.get(i))
                .and_then(|l| asm.labels().resolve_dynamic(*l).ok())
                .map_or(u32::MAX, |o| o.0 as u32)
        })
        .collect();
    let code = asm.finalize().map_err(|err| LinkError::UnresolvedLddw {
        pc: 0,
        kind: LddwKind::Imm,
        imm: 0,
        reason: format!("code generation failed: {err}"),
    })?;
    Ok(Compiled {
        code,
        slot_offsets: offsets,
        blocks: block_list,
        body_end,
        body_start,
        landing,
        keep,
    })
}

/// The eBPF registers `insn` may write (calls clobber `r0`-`r5`).
fn written_registers(insn: Insn) -> Vec<usize> {
    match insn {
        Insn::Alu { dst, .. }
        | Insn::Neg { dst, .. }
        | Insn::Endian { dst, .. }
        | Insn::Load { dst, .. }
        | Insn::LoadImm64 { dst, .. } => vec![dst.index()],
        Insn::Atomic { op, src, .. } => match op {
            AtomicOp::CmpXchg => vec![0],
            AtomicOp::Xchg
            | AtomicOp::Add { fetch: true }
            | AtomicOp::Or { fetch: true }
            | AtomicOp::And { fetch: true }
            | AtomicOp::Xor { fetch: true } => vec![src.index()],
            _ => Vec::new(),
        },
        Insn::Call(_) | Insn::CallX { .. } | Insn::LoadAbs { .. } | Insn::LoadInd { .. } => {
            (0..=5).collect()
        }
        Insn::Store { .. } | Insn::Ja { .. } | Insn::Jmp { .. } | Insn::Exit => Vec::new(),
    }
}

impl Emitter<'_> {
    /// The entry trampoline: `extern "sysv64" fn(ctx, target) -> status`, at offset 0. It saves the
    /// callee-saved registers and the previous unwind point, loads the budget, `r10` and the
    /// arguments from the context and calls the eBPF code at `target`; errors unwind to its tail.
    fn trampoline(&mut self) {
        let unwind = self.unwind;
        dynasm!(self.asm
            ; .arch x64
            ; push rbp
            ; push rbx
            ; push r12
            ; push r13
            ; push r14
            ; push r15
            ; push QWORD [rdi + off::HOST_RSP]
            ; push QWORD [rdi + off::DOMAIN_RSP]
            ; sub rsp, 8
            ; mov [rdi + off::HOST_RSP], rsp
            ; mov r11, rsi
        );
        if self.thunks.confined {
            // Onto the domain's native stack, then PKRU = the domain's.
            dynasm!(self.asm
                ; .arch x64
                ; mov rsp, [rdi + off::DOMAIN_RSP]
                ; mov r9, rdi
                ; mov eax, DWORD [rdi + off::PKRU]
                ; xor ecx, ecx
                ; xor edx, edx
            );
            self.asm.extend(WRPKRU);
            dynasm!(self.asm ; .arch x64 ; mov rdi, r9);
        }
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov r12, [rdi + off::BUDGET]);
        } else {
            dynasm!(self.asm ; .arch x64 ; mov r12, rdi);
        }
        dynasm!(self.asm
            ; .arch x64
            ; mov rbp, [rdi + off::FRAME_TOP]
            ; xor eax, eax
            ; xor ebx, ebx
            ; xor r13d, r13d
            ; xor r14d, r14d
            ; xor r15d, r15d
            ; mov rsi, [rdi + off::ARGS + 8]
            ; mov rdx, [rdi + off::ARGS + 16]
            ; mov rcx, [rdi + off::ARGS + 24]
            ; mov r8, [rdi + off::ARGS + 32]
            ; mov rdi, [rdi + off::ARGS]
            ; call r11
            ; lea r11, [rbp - 1]
            ; or r11, (STACK_SIZE - 1) as i32
            ; inc r11
            ; mov [r11 + off::RET], rax
        );
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov [r11 + off::BUDGET], r12);
        }
        dynasm!(self.asm
            ; .arch x64
            ; xor eax, eax
            ; =>unwind
        );
        if self.thunks.confined {
            // Back to the host's PKRU (all keys; the caller restores its own value) before the
            // host's stack is touched again.
            dynasm!(self.asm ; .arch x64 ; mov r9, rax);
            self.allow_all_keys();
            dynasm!(self.asm ; .arch x64 ; mov rax, r9);
        }
        dynasm!(self.asm
            ; .arch x64
            ; mov rsp, [r11 + off::HOST_RSP]
            ; add rsp, 8
            ; pop QWORD [r11 + off::DOMAIN_RSP]
            ; pop QWORD [r11 + off::HOST_RSP]
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop r12
            ; pop rbx
            ; pop rbp
            ; ret
        );
        self.asm.align(16, 0xcc);
    }

    /// `r11` = the run context.
    fn ctx_r11(&mut self) {
        if self.count_budget {
            dynasm!(self.asm
                ; .arch x64
                ; lea r11, [rbp - 1]
                ; or r11, (STACK_SIZE - 1) as i32
                ; inc r11
            );
        } else {
            dynasm!(self.asm ; .arch x64 ; mov r11, r12);
        }
    }

    /// A polling point: ends the run with an interrupt at `pc` when the run's interrupt flag (in
    /// the run anchor, set from another thread through an [`crate::Interrupter`]) is set. One load
    /// and one branch where `r12` holds the context; code counting a budget finds it from `rbp`.
    fn poll(&mut self, pc: usize) {
        if !self.polling {
            return;
        }
        let entry = self.asm.new_dynamic_label();
        let back = self.asm.new_dynamic_label();
        if self.count_budget {
            dynasm!(self.asm
                ; .arch x64
                ; lea r10, [rbp - 1]
                ; or r10, (STACK_SIZE - 1) as i32
                ; cmp DWORD [r10 + 1 + off::POLL], 0
                ; jne =>entry
                ; =>back
            );
        } else {
            dynasm!(self.asm ; .arch x64 ; test BYTE [r12 + off::POLL], 1 ; jnz =>entry ; =>back);
        }
        self.cold.push(Cold::Poll {
            entry,
            back,
            pc: pc as u32,
        });
    }

    fn budget(&mut self, block: u32, n: usize) {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        let entry = self.asm.new_dynamic_label();
        dynasm!(self.asm ; .arch x64 ; sub r12, n ; jb =>entry);
        self.cold.push(Cold::Budget { entry, block, n });
    }

    fn insn(&mut self, linked: &Linked, pc: usize, insn: Insn) -> Result<(), LinkError> {
        let program = linked.program();
        let label_at = |slot: i64| -> Option<DynamicLabel> {
            usize::try_from(slot)
                .ok()
                .and_then(|s| program.index_of_slot(s))
                .and_then(|i| self.labels.get(i).copied())
        };
        let bad = LinkError::BadBranch { pc };
        match insn {
            Insn::Alu {
                width,
                op,
                dst,
                src,
            } => self.alu(width, op, x(dst), src),
            Insn::Neg { width, dst } => {
                let d = x(dst);
                match width {
                    Width::W64 => dynasm!(self.asm ; .arch x64 ; neg Rq(d)),
                    Width::W32 => dynasm!(self.asm ; .arch x64 ; neg Rd(d)),
                }
            }
            Insn::Endian { kind, bits, dst } => {
                let d = x(dst);
                match (kind, bits) {
                    (Endian::ToLe, 16) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), Rw(d)),
                    (Endian::ToLe, 32) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d)),
                    (Endian::ToLe, _) => {}
                    (_, 16) => dynasm!(self.asm
                        ; .arch x64
                        ; ror Rw(d), 8
                        ; movzx Rd(d), Rw(d)
                    ),
                    (_, 32) => dynasm!(self.asm ; .arch x64 ; bswap Rd(d)),
                    (_, _) => dynasm!(self.asm ; .arch x64 ; bswap Rq(d)),
                }
            }
            Insn::Load {
                size,
                signed,
                dst,
                src,
                off,
            } => {
                let (b, disp) = self.address(pc, src, off, size.bytes() as i32, false, false);
                self.load(size, signed, x(dst), b, disp);
            }
            Insn::Store {
                size,
                dst,
                off,
                src,
            } => {
                let (b, disp) = self.address(pc, dst, off, size.bytes() as i32, true, false);
                self.store(size, b, disp, src);
            }
            Insn::Atomic {
                size,
                op,
                dst,
                off,
                src,
            } => {
                let (b, disp) = self.address(pc, dst, off, size.bytes() as i32, true, true);
                self.atomic(size == Size::DW, op, b, disp, x(src));
            }
            Insn::LoadImm64 { dst, .. } => {
                // `Linked::new` resolved every `lddw`.
                self.mov_imm64(x(dst), linked.lddw_value(pc).unwrap_or(0));
            }
            Insn::LoadAbs { size, imm } => self.ldabs(size, None, imm),
            Insn::LoadInd { size, src, imm } => self.ldabs(size, Some(x(src)), imm),
            Insn::Ja { .. } => {
                let target = insn.branch_target(pc);
                let t = self
                    .back_edge(pc)
                    .or_else(|| target.and_then(label_at))
                    .ok_or(bad.clone())?;
                if target.is_some_and(|t| t <= pc as i64) {
                    self.poll(pc);
                }
                dynasm!(self.asm ; .arch x64 ; jmp =>t);
            }
            Insn::Jmp {
                width,
                cond,
                dst,
                src,
                ..
            } => {
                let target = insn.branch_target(pc);
                let t = self
                    .back_edge(pc)
                    .or_else(|| target.and_then(label_at))
                    .ok_or(bad.clone())?;
                if target.is_some_and(|t| t <= pc as i64) {
                    self.poll(pc);
                }
                self.jump(width, cond, x(dst), src, t);
            }
            Insn::Call(CallTarget::Helper(id)) => {
                let index = linked
                    .helper_index(pc)
                    .ok_or(LinkError::UnknownHelper { pc, id })?;
                match self.direct_call(linked, pc, index) {
                    Some(call) => {
                        // Confined code does not trust the proof of the call's stack arguments:
                        // one out of the stack window makes the helper's own call, which audits
                        // it.
                        let checked = self.sfi.is_some() && !call.stack_args.is_empty();
                        let helper = self.asm.new_dynamic_label();
                        if checked {
                            for &(reg, len) in &call.stack_args {
                                let len = i32::try_from(len.max(1)).map_err(|_| bad.clone())?;
                                dynasm!(self.asm ; .arch x64 ; mov r11, Rq(x(reg)));
                                self.inline_stack_check(len, helper);
                            }
                        }
                        // `r1` is the map the helper's direct form was made for; `r2`-`r5`
                        // (key, value, flags) stay in place as its other arguments.
                        dynasm!(self.asm ; .arch x64 ; mov rdi, QWORD call.data as i64);
                        self.call_thunk(call.func as usize as u64, true);
                        self.keep.push(call.keep);
                        if checked {
                            let done = self.asm.new_dynamic_label();
                            dynasm!(self.asm ; .arch x64 ; jmp =>done ; =>helper);
                            self.call_rust(pc as u32, index);
                            dynasm!(self.asm ; .arch x64 ; =>done);
                        }
                    }
                    None => self.call_rust(pc as u32, index),
                }
            }
            Insn::Call(CallTarget::Local(_)) => {
                let t = insn
                    .branch_target(pc)
                    .and_then(label_at)
                    .ok_or(bad.clone())?;
                self.poll(pc);
                self.depth_check(pc as u32);
                self.local_call(|asm| dynasm!(asm ; .arch x64 ; call =>t));
            }
            Insn::Call(CallTarget::Kfunc(id)) => return Err(LinkError::Kfunc { pc, id }),
            Insn::CallX { dst } => self.callx(pc as u32, x(dst)),
            Insn::Exit => dynasm!(self.asm ; .arch x64 ; ret),
        }
        Ok(())
    }

    /// The header's own code for the back-edge of a raised loop whose latch is at `pc`.
    fn back_edge(&self, pc: usize) -> Option<DynamicLabel> {
        self.back_edges
            .iter()
            .find(|&&(latch, _)| latch == pc)
            .map(|&(_, l)| l)
    }

    /// Jumps to `body` (the loop's own code) when the raised loop's induction variable starts
    /// less than `min` elements from its bound ([`moat_raise::Distance`], a signed difference:
    /// a loop that runs once, not at all or wraps goes to its own code too). Emits nothing when
    /// the offset or the limit does not fit an immediate: the plan is then always asked.
    fn short_loop_check(&mut self, d: moat_raise::Distance, min: u32, body: DynamicLabel) {
        let limit = i64::from(min)
            .checked_mul(d.step.abs())
            .and_then(|l| i32::try_from(l).ok());
        let (Ok(off), Some(limit)) = (i32::try_from(d.off), limit) else {
            return;
        };
        let iv = MAP[d.iv % 11];
        dynasm!(self.asm ; .arch x64 ; lea r10, [Rq(iv) + off]);
        match d.bound {
            moat_raise::ir::Bound::Imm(i) => {
                dynasm!(self.asm ; .arch x64 ; mov r11, QWORD i)
            }
            moat_raise::ir::Bound::Reg(r) => {
                dynasm!(self.asm ; .arch x64 ; mov r11, Rq(MAP[r % 11]))
            }
        }
        if d.step > 0 {
            dynasm!(self.asm ; .arch x64 ; sub r11, r10 ; cmp r11, limit ; jl =>body);
        } else {
            dynasm!(self.asm ; .arch x64 ; sub r10, r11 ; cmp r10, limit ; jl =>body);
        }
    }

    /// The call to a raised loop's plan at its header (`crate::raise`): `r0`-`r10` into the
    /// context, `jit_raise` called with the loop's index, the registers (and the budget) reloaded;
    /// then on to the exit it returns, or to `body` (the loop's own code) when it returns 0.
    fn raise_hook(&mut self, pc: usize, index: usize, body: DynamicLabel) {
        self.ctx_r11();
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov [r11 + off::BUDGET], r12);
        }
        for (r, &reg) in MAP.iter().enumerate() {
            let at = off::RAISE_REGS + 8 * r as i32;
            dynasm!(self.asm ; .arch x64 ; mov [r11 + at], Rq(reg));
        }
        dynasm!(self.asm
            ; .arch x64
            ; mov DWORD [r11 + off::CALL_PC], pc as i32
            ; mov DWORD [r11 + off::CALL_INDEX], index as i32
            ; mov [r11 + off::CALL_FP], rbp
            ; mov r9, r11
        );
        self.call_thunk(self.thunks.raise, true);
        dynasm!(self.asm ; .arch x64 ; mov r10, rax);
        self.ctx_r11();
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov r12, [r11 + off::BUDGET]);
        }
        for (r, &reg) in MAP.iter().enumerate().take(10) {
            let at = off::RAISE_REGS + 8 * r as i32;
            dynasm!(self.asm ; .arch x64 ; mov Rq(reg), [r11 + at]);
        }
        dynasm!(self.asm
            ; .arch x64
            ; test r10, r10
            ; jz =>body
            ; jmp r10
        );
    }

    fn mov_imm64(&mut self, d: u8, value: u64) {
        if value == 0 {
            dynasm!(self.asm ; .arch x64 ; xor Rd(d), Rd(d));
        } else if value <= u64::from(u32::MAX) {
            dynasm!(self.asm ; .arch x64 ; mov Rd(d), value as u32 as i32);
        } else if value as i64 >= i64::from(i32::MIN) && (value as i64) < 0 {
            dynasm!(self.asm ; .arch x64 ; mov Rq(d), value as i64 as i32);
        } else {
            dynasm!(self.asm ; .arch x64 ; mov Rq(d), QWORD value as i64);
        }
    }

    fn alu(&mut self, width: Width, op: AluOp, d: u8, src: Operand) {
        let w64 = width == Width::W64;
        macro_rules! simple {
            ($op:ident) => {
                match (w64, src) {
                    (true, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; $op Rq(d), Rq(x(s))),
                    (true, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; $op Rq(d), i),
                    (false, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; $op Rd(d), Rd(x(s))),
                    (false, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; $op Rd(d), i),
                }
            };
        }
        match op {
            AluOp::Add => simple!(add),
            AluOp::Sub => simple!(sub),
            AluOp::Or => simple!(or),
            AluOp::And => simple!(and),
            AluOp::Xor => simple!(xor),
            AluOp::Mul => match (w64, src) {
                (true, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; imul Rq(d), Rq(x(s))),
                (true, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; imul Rq(d), Rq(d), i),
                (false, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; imul Rd(d), Rd(x(s))),
                (false, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; imul Rd(d), Rd(d), i),
            },
            AluOp::Mov => match (w64, src) {
                (true, Operand::Reg(s)) => {
                    if x(s) != d {
                        dynasm!(self.asm ; .arch x64 ; mov Rq(d), Rq(x(s)));
                    }
                }
                (true, Operand::Imm(i)) => self.mov_imm64(d, i64::from(i) as u64),
                (false, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(x(s))),
                (false, Operand::Imm(i)) => self.mov_imm64(d, u64::from(i as u32)),
            },
            AluOp::MovSx(bits) => {
                let s = match src {
                    Operand::Reg(s) => x(s),
                    // The decoder refuses immediate sign-extending moves.
                    Operand::Imm(i) => {
                        self.mov_imm64(R11, i64::from(i) as u64);
                        R11
                    }
                };
                match (w64, bits) {
                    (true, SxBits::B8) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), Rb(s)),
                    (true, SxBits::B16) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), Rw(s)),
                    (true, SxBits::B32) => dynasm!(self.asm ; .arch x64 ; movsxd Rq(d), Rd(s)),
                    (false, SxBits::B8) => dynasm!(self.asm ; .arch x64 ; movsx Rd(d), Rb(s)),
                    (false, SxBits::B16) => dynasm!(self.asm ; .arch x64 ; movsx Rd(d), Rw(s)),
                    (false, SxBits::B32) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(s)),
                }
            }
            AluOp::Lsh | AluOp::Rsh | AluOp::Arsh => self.shift(w64, op, d, src),
            AluOp::Div | AluOp::Mod | AluOp::SDiv | AluOp::SMod => self.divmod(w64, op, d, src),
        }
    }

    fn shift(&mut self, w64: bool, op: AluOp, d: u8, src: Operand) {
        macro_rules! sh {
            ($reg:expr, $amount:tt) => {
                match (w64, op) {
                    (true, AluOp::Lsh) => dynasm!(self.asm ; .arch x64 ; shl Rq($reg), $amount),
                    (true, AluOp::Rsh) => dynasm!(self.asm ; .arch x64 ; shr Rq($reg), $amount),
                    (true, _) => dynasm!(self.asm ; .arch x64 ; sar Rq($reg), $amount),
                    (false, AluOp::Lsh) => dynasm!(self.asm ; .arch x64 ; shl Rd($reg), $amount),
                    (false, AluOp::Rsh) => dynasm!(self.asm ; .arch x64 ; shr Rd($reg), $amount),
                    (false, _) => dynasm!(self.asm ; .arch x64 ; sar Rd($reg), $amount),
                }
            };
        }
        match src {
            Operand::Imm(i) => {
                let amount = (i as u32 & if w64 { 63 } else { 31 }) as i8;
                if amount == 0 {
                    if !w64 {
                        dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d));
                    }
                } else {
                    sh!(d, amount);
                }
            }
            Operand::Reg(s) if x(s) == RCX => sh!(d, cl),
            Operand::Reg(s) => {
                // Borrow rcx for the count; the shifted value sits in r11 when it is rcx itself.
                let target = if d == RCX { R11 } else { d };
                dynasm!(self.asm ; .arch x64 ; mov r11, rcx ; mov rcx, Rq(x(s)));
                sh!(target, cl);
                dynasm!(self.asm ; .arch x64 ; mov rcx, r11);
            }
        }
    }

    /// Division and modulo with RFC 9669 semantics: by zero, `div` gives 0 and `mod` leaves the
    /// dividend; signed `INT_MIN / -1` wraps (x86 `idiv` would trap, so `-1` is handled apart).
    fn divmod(&mut self, w64: bool, op: AluOp, d: u8, src: Operand) {
        let signed = matches!(op, AluOp::SDiv | AluOp::SMod);
        let is_mod = matches!(op, AluOp::Mod | AluOp::SMod);
        match src {
            Operand::Imm(i) => {
                let zero = if w64 { i == 0 } else { i as u32 == 0 };
                if zero {
                    self.div_by_zero(w64, is_mod, d);
                } else if signed && i == -1 {
                    self.div_by_minus_one(w64, is_mod, d);
                } else {
                    if w64 {
                        self.mov_imm64(R11, i64::from(i) as u64);
                    } else {
                        dynasm!(self.asm ; .arch x64 ; mov r11d, i);
                    }
                    self.div_r11(w64, signed, is_mod, d);
                }
            }
            Operand::Reg(s) => {
                let s = x(s);
                let zero = self.asm.new_dynamic_label();
                let minus1 = self.asm.new_dynamic_label();
                let done = self.asm.new_dynamic_label();
                if w64 {
                    dynasm!(self.asm ; .arch x64 ; mov r11, Rq(s) ; test r11, r11 ; jz =>zero);
                    if signed {
                        dynasm!(self.asm ; .arch x64 ; cmp r11, -1 ; je =>minus1);
                    }
                } else {
                    dynasm!(self.asm ; .arch x64 ; mov r11d, Rd(s) ; test r11d, r11d ; jz =>zero);
                    if signed {
                        dynasm!(self.asm ; .arch x64 ; cmp r11d, -1 ; je =>minus1);
                    }
                }
                self.div_r11(w64, signed, is_mod, d);
                dynasm!(self.asm ; .arch x64 ; jmp =>done ; =>zero);
                self.div_by_zero(w64, is_mod, d);
                if signed {
                    dynasm!(self.asm ; .arch x64 ; jmp =>done ; =>minus1);
                    self.div_by_minus_one(w64, is_mod, d);
                } else {
                    dynasm!(self.asm ; .arch x64 ; =>minus1);
                }
                dynasm!(self.asm ; .arch x64 ; =>done);
            }
        }
    }

    fn div_by_zero(&mut self, w64: bool, is_mod: bool, d: u8) {
        match (is_mod, w64) {
            (false, _) => dynasm!(self.asm ; .arch x64 ; xor Rd(d), Rd(d)),
            (true, true) => {}
            (true, false) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), Rd(d)),
        }
    }

    fn div_by_minus_one(&mut self, w64: bool, is_mod: bool, d: u8) {
        match (is_mod, w64) {
            (false, true) => dynasm!(self.asm ; .arch x64 ; neg Rq(d)),
            (false, false) => dynasm!(self.asm ; .arch x64 ; neg Rd(d)),
            (true, _) => dynasm!(self.asm ; .arch x64 ; xor Rd(d), Rd(d)),
        }
    }

    /// `d = d op r11` for a divisor in r11 that is neither 0 nor (signed) -1; rax and rdx preserved.
    fn div_r11(&mut self, w64: bool, signed: bool, is_mod: bool, d: u8) {
        dynasm!(self.asm ; .arch x64 ; mov r10, rax ; mov r9, rdx);
        match (w64, signed) {
            (true, false) => {
                dynasm!(self.asm ; .arch x64 ; mov rax, Rq(d) ; xor edx, edx ; div r11)
            }
            (true, true) => dynasm!(self.asm ; .arch x64 ; mov rax, Rq(d) ; cqo ; idiv r11),
            (false, false) => {
                dynasm!(self.asm ; .arch x64 ; mov eax, Rd(d) ; xor edx, edx ; div r11d)
            }
            (false, true) => dynasm!(self.asm ; .arch x64 ; mov eax, Rd(d) ; cdq ; idiv r11d),
        }
        match (w64, is_mod) {
            (true, false) => dynasm!(self.asm ; .arch x64 ; mov r11, rax),
            (true, true) => dynasm!(self.asm ; .arch x64 ; mov r11, rdx),
            (false, false) => dynasm!(self.asm ; .arch x64 ; mov r11d, eax),
            (false, true) => dynasm!(self.asm ; .arch x64 ; mov r11d, edx),
        }
        dynasm!(self.asm ; .arch x64 ; mov rax, r10 ; mov rdx, r9 ; mov Rq(d), r11);
    }

    /// The address operand of a memory access at `pc` of `len` bytes at `base + off`, checked unless
    /// proven safe: returns (base register, displacement) to use.
    fn address(
        &mut self,
        pc: usize,
        base: Reg,
        off: i16,
        len: i32,
        write: bool,
        atomic: bool,
    ) -> (u8, i32) {
        let off = i32::from(off);
        // Accesses through r10 inside the current frame cannot leave the live stack window.
        if base == Reg::R10 && off >= -FRAME && off + len <= 0 && !(atomic && off % len != 0) {
            return (RBP, off);
        }
        // Atomics keep their check: the verifier's facts say nothing of alignment.
        if let (false, Some(memory)) = (atomic, self.proofs.at(pc)) {
            match self.sfi {
                None => return (x(base), off),
                Some(sfi) => {
                    let first = sfi.first_check(memory);
                    return self.confined_address(pc, base, off, len, write, first);
                }
            }
        }
        let b = x(base);
        let entry = self.asm.new_dynamic_label();
        let back = self.asm.new_dynamic_label();
        dynasm!(self.asm ; .arch x64 ; lea r11, [Rq(b) + off]);
        let info =
            pc as u64 | (len as u64) << 32 | u64::from(write) << 40 | u64::from(atomic) << 41;
        if atomic {
            dynasm!(self.asm ; .arch x64 ; test r11b, (len - 1) as i8 ; jnz =>entry);
        }
        let stack_done = base == Reg::R10 && !atomic;
        if stack_done {
            self.inline_stack_check(len, entry);
        } else {
            let (start, rlen) = if write {
                (off::W0_START, off::W0_LEN)
            } else {
                (off::R0_START, off::R0_LEN)
            };
            dynasm!(self.asm
                ; .arch x64
                ; lea r10, [rbp - 1]
                ; or r10, (STACK_SIZE - 1) as i32
                ; mov r9, r11
                ; sub r9, [r10 + 1 + start]
                ; jb =>entry
                ; add r9, len
                ; cmp r9, [r10 + 1 + rlen]
                ; ja =>entry
            );
        }
        dynasm!(self.asm ; .arch x64 ; =>back);
        self.cold.push(Cold::Mem {
            entry,
            back,
            info,
            len,
            stack_done,
            atomic,
            address: None,
        });
        (R11, 0)
    }

    /// A proven access under software fault isolation: checked inline against `first` (a zone of
    /// the domain or the live stack window) and, when that fails, completely (stack window, then
    /// every region of the run), so that an access a wrong verifier "proved" still cannot leave
    /// the program's memory. Returns (base register, displacement) to use.
    fn confined_address(
        &mut self,
        pc: usize,
        base: Reg,
        off: i32,
        len: i32,
        write: bool,
        first: crate::FirstCheck,
    ) -> (u8, i32) {
        let b = x(base);
        let info = pc as u64 | (len as u64) << 32 | u64::from(write) << 40;
        let entry = self.asm.new_dynamic_label();
        let back = self.asm.new_dynamic_label();
        let zone = match first {
            crate::FirstCheck::Zone(zone) => zone,
            crate::FirstCheck::Stack => {
                dynasm!(self.asm ; .arch x64 ; lea r11, [Rq(b) + off]);
                self.inline_stack_check(len, entry);
                dynasm!(self.asm ; .arch x64 ; =>back);
                self.cold.push(Cold::Mem {
                    entry,
                    back,
                    info,
                    len,
                    stack_done: true,
                    atomic: false,
                    address: None,
                });
                return (R11, 0);
            }
        };
        // A zone with guards wider than any displacement and access: checking the base register
        // confines `base + off` (the guards fault), and the check holds for later accesses through
        // the same register in this block while it is not written.
        if zone.guard >= (1 << 15) + 8 {
            if self.zone_checked.get(base.index()) == Some(&Some(zone)) {
                return (b, off);
            }
            dynasm!(self.asm ; .arch x64 ; mov r9, Rq(b));
            self.inline_zone_check(zone, 1, entry);
            dynasm!(self.asm ; .arch x64 ; =>back);
            self.cold.push(Cold::Mem {
                entry,
                back,
                info,
                len,
                stack_done: false,
                atomic: false,
                address: Some((b, off)),
            });
            if let Some(c) = self.zone_checked.get_mut(base.index()) {
                *c = Some(zone);
            }
            return (b, off);
        }
        dynasm!(self.asm ; .arch x64 ; lea r11, [Rq(b) + off] ; mov r9, r11);
        self.inline_zone_check(zone, len, entry);
        dynasm!(self.asm ; .arch x64 ; =>back);
        self.cold.push(Cold::Mem {
            entry,
            back,
            info,
            len,
            stack_done: false,
            atomic: false,
            address: None,
        });
        (R11, 0)
    }

    /// Jumps to `fail` unless `[r9, r9 + len)` lies in `zone` (whose bounds are immediates: a
    /// zone is fixed for the program's life). Clobbers `r9` and `r10`.
    fn inline_zone_check(&mut self, zone: crate::Zone, len: i32, fail: DynamicLabel) {
        let Some(room) = zone.len.checked_sub(len as u64) else {
            dynasm!(self.asm ; .arch x64 ; jmp =>fail);
            return;
        };
        let arena = self.sfi.is_some_and(|s| s.arena == zone);
        if arena && !self.count_budget {
            // The arena's start is in the run context, which `r12` holds: one fused load-sub.
            dynasm!(self.asm ; .arch x64 ; sub r9, [r12 + off::SFI_ARENA]);
        } else {
            dynasm!(self.asm
                ; .arch x64
                ; mov r10, QWORD zone.start as i64
                ; sub r9, r10
            );
        }
        match i32::try_from(room) {
            Ok(room) => dynasm!(self.asm ; .arch x64 ; cmp r9, room ; ja =>fail),
            Err(_) => dynasm!(self.asm
                ; .arch x64
                ; mov r10, QWORD room as i64
                ; cmp r9, r10
                ; ja =>fail
            ),
        }
    }

    /// Jumps to `fail` unless `[r11, r11 + len)` lies in the live stack window `[rbp - 512, top)`.
    fn inline_stack_check(&mut self, len: i32, fail: DynamicLabel) {
        dynasm!(self.asm
            ; .arch x64
            ; lea r9, [rbp - FRAME]
            ; cmp r11, r9
            ; jb =>fail
            ; lea r9, [r11 + (len - 1)]
            ; lea r10, [rbp - 1]
            ; xor r10, r9
            ; shr r10, STACK_SIZE.trailing_zeros() as i8
            ; jnz =>fail
        );
    }

    fn load(&mut self, size: Size, signed: bool, d: u8, b: u8, o: i32) {
        match (size, signed) {
            (Size::B, false) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), BYTE [Rq(b) + o]),
            (Size::H, false) => dynasm!(self.asm ; .arch x64 ; movzx Rd(d), WORD [Rq(b) + o]),
            (Size::W, false) => dynasm!(self.asm ; .arch x64 ; mov Rd(d), DWORD [Rq(b) + o]),
            (Size::DW, _) => dynasm!(self.asm ; .arch x64 ; mov Rq(d), QWORD [Rq(b) + o]),
            (Size::B, true) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), BYTE [Rq(b) + o]),
            (Size::H, true) => dynasm!(self.asm ; .arch x64 ; movsx Rq(d), WORD [Rq(b) + o]),
            (Size::W, true) => dynasm!(self.asm ; .arch x64 ; movsxd Rq(d), DWORD [Rq(b) + o]),
        }
    }

    fn store(&mut self, size: Size, b: u8, o: i32, src: Operand) {
        match (size, src) {
            (Size::B, Operand::Imm(i)) => {
                dynasm!(self.asm ; .arch x64 ; mov BYTE [Rq(b) + o], i as i8)
            }
            (Size::H, Operand::Imm(i)) => {
                dynasm!(self.asm ; .arch x64 ; mov WORD [Rq(b) + o], i as i16)
            }
            (Size::W, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; mov DWORD [Rq(b) + o], i),
            (Size::DW, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; mov QWORD [Rq(b) + o], i),
            (Size::B, Operand::Reg(s)) => {
                dynasm!(self.asm ; .arch x64 ; mov BYTE [Rq(b) + o], Rb(x(s)))
            }
            (Size::H, Operand::Reg(s)) => {
                dynasm!(self.asm ; .arch x64 ; mov WORD [Rq(b) + o], Rw(x(s)))
            }
            (Size::W, Operand::Reg(s)) => {
                dynasm!(self.asm ; .arch x64 ; mov DWORD [Rq(b) + o], Rd(x(s)))
            }
            (Size::DW, Operand::Reg(s)) => {
                dynasm!(self.asm ; .arch x64 ; mov QWORD [Rq(b) + o], Rq(x(s)))
            }
        }
    }

    fn atomic(&mut self, w64: bool, op: AtomicOp, b: u8, o: i32, s: u8) {
        // The fetch loops borrow rax: an unchecked base in rax moves to r11 first.
        let (b, o) = if b == RAX {
            dynasm!(self.asm ; .arch x64 ; lea r11, [rax + o]);
            (R11, 0)
        } else {
            (b, o)
        };
        macro_rules! plain {
            ($op:ident) => {
                if w64 {
                    dynasm!(self.asm ; .arch x64 ; lock $op QWORD [Rq(b) + o], Rq(s))
                } else {
                    dynasm!(self.asm ; .arch x64 ; lock $op DWORD [Rq(b) + o], Rd(s))
                }
            };
        }
        macro_rules! fetch_loop {
            ($op:ident) => {{
                // old = *p; loop { new = old op s; cmpxchg } with rax borrowed (saved in r9) and the
                // operand copied to r12 (the budget, saved on the native stack meanwhile).
                let again = self.asm.new_dynamic_label();
                dynasm!(self.asm ; .arch x64 ; push r12 ; mov r12, Rq(s) ; mov r9, rax);
                if w64 {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov rax, QWORD [Rq(b) + o]
                        ; =>again
                        ; mov r10, rax
                        ; $op r10, r12
                        ; lock cmpxchg QWORD [Rq(b) + o], r10
                        ; jne =>again
                        ; mov r10, rax
                    );
                } else {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov eax, DWORD [Rq(b) + o]
                        ; =>again
                        ; mov r10d, eax
                        ; $op r10d, r12d
                        ; lock cmpxchg DWORD [Rq(b) + o], r10d
                        ; jne =>again
                        ; mov r10d, eax
                    );
                }
                dynasm!(self.asm ; .arch x64 ; mov rax, r9 ; pop r12 ; mov Rq(s), r10);
            }};
        }
        match op {
            AtomicOp::Add { fetch: false } => plain!(add),
            AtomicOp::Or { fetch: false } => plain!(or),
            AtomicOp::And { fetch: false } => plain!(and),
            AtomicOp::Xor { fetch: false } => plain!(xor),
            AtomicOp::Add { fetch: true } => {
                if w64 {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov r10, Rq(s)
                        ; lock xadd QWORD [Rq(b) + o], r10
                        ; mov Rq(s), r10
                    );
                } else {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov r10d, Rd(s)
                        ; lock xadd DWORD [Rq(b) + o], r10d
                        ; mov Rd(s), r10d
                    );
                }
            }
            AtomicOp::Or { fetch: true } => fetch_loop!(or),
            AtomicOp::And { fetch: true } => fetch_loop!(and),
            AtomicOp::Xor { fetch: true } => fetch_loop!(xor),
            AtomicOp::Xchg => {
                if w64 {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov r10, Rq(s)
                        ; xchg QWORD [Rq(b) + o], r10
                        ; mov Rq(s), r10
                    );
                } else {
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov r10d, Rd(s)
                        ; xchg DWORD [Rq(b) + o], r10d
                        ; mov Rd(s), r10d
                    );
                }
            }
            AtomicOp::CmpXchg => {
                if w64 {
                    dynasm!(self.asm ; .arch x64 ; lock cmpxchg QWORD [Rq(b) + o], Rq(s));
                } else {
                    // On success cmpxchg leaves rax's upper half alone: r0 is the zero-extended old value.
                    dynasm!(self.asm
                        ; .arch x64
                        ; lock cmpxchg DWORD [Rq(b) + o], Rd(s)
                        ; mov eax, eax
                    );
                }
            }
        }
    }

    /// Legacy packet loads: `r0 = ntoh(*(packet + [src] + imm))`, ending the run with 0 when out of
    /// the packet (the first region), and clearing `r1`-`r5` like a call.
    fn ldabs(&mut self, size: Size, src: Option<u8>, imm: i32) {
        let n = size.bytes() as i32;
        let zero = self.ldabs_zero;
        match src {
            Some(s) => dynasm!(self.asm ; .arch x64 ; mov r11, Rq(s) ; add r11, imm),
            None => dynasm!(self.asm ; .arch x64 ; mov r11, imm),
        }
        dynasm!(self.asm
            ; .arch x64
            ; lea r10, [rbp - 1]
            ; or r10, (STACK_SIZE - 1) as i32
            ; mov r9, [r10 + 1 + off::PKT_LEN]
            ; cmp r11, r9
            ; ja =>zero
            ; sub r9, r11
            ; cmp r9, n
            ; jb =>zero
            ; add r11, [r10 + 1 + off::PKT_START]
        );
        match size {
            Size::B => dynasm!(self.asm ; .arch x64 ; movzx eax, BYTE [r11]),
            Size::H => {
                dynasm!(self.asm ; .arch x64 ; movzx eax, WORD [r11] ; ror ax, 8 ; movzx eax, ax)
            }
            _ => dynasm!(self.asm ; .arch x64 ; mov eax, DWORD [r11] ; bswap eax),
        }
        dynasm!(self.asm
            ; .arch x64
            ; xor edi, edi
            ; xor esi, esi
            ; xor edx, edx
            ; xor ecx, ecx
            ; xor r8d, r8d
        );
    }

    fn jump(&mut self, width: Width, cond: JmpCond, d: u8, src: Operand, t: DynamicLabel) {
        let w64 = width == Width::W64;
        if cond == JmpCond::Set {
            match (w64, src) {
                (true, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; test Rq(d), Rq(x(s))),
                (true, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; test Rq(d), i),
                (false, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; test Rd(d), Rd(x(s))),
                (false, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; test Rd(d), i),
            }
        } else {
            match (w64, src) {
                (true, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; cmp Rq(d), Rq(x(s))),
                (true, Operand::Imm(0)) => dynasm!(self.asm ; .arch x64 ; test Rq(d), Rq(d)),
                (true, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; cmp Rq(d), i),
                (false, Operand::Reg(s)) => dynasm!(self.asm ; .arch x64 ; cmp Rd(d), Rd(x(s))),
                (false, Operand::Imm(0)) => dynasm!(self.asm ; .arch x64 ; test Rd(d), Rd(d)),
                (false, Operand::Imm(i)) => dynasm!(self.asm ; .arch x64 ; cmp Rd(d), i),
            }
        }
        match cond {
            JmpCond::Eq => dynasm!(self.asm ; .arch x64 ; je =>t),
            JmpCond::Ne | JmpCond::Set => dynasm!(self.asm ; .arch x64 ; jne =>t),
            JmpCond::Gt => dynasm!(self.asm ; .arch x64 ; ja =>t),
            JmpCond::Ge => dynasm!(self.asm ; .arch x64 ; jae =>t),
            JmpCond::Lt => dynasm!(self.asm ; .arch x64 ; jb =>t),
            JmpCond::Le => dynasm!(self.asm ; .arch x64 ; jbe =>t),
            JmpCond::Sgt => dynasm!(self.asm ; .arch x64 ; jg =>t),
            JmpCond::Sge => dynasm!(self.asm ; .arch x64 ; jge =>t),
            JmpCond::Slt => dynasm!(self.asm ; .arch x64 ; jl =>t),
            JmpCond::Sle => dynasm!(self.asm ; .arch x64 ; jle =>t),
        }
    }

    /// Calls Rust (`jit_call`) for helper `index` (or, with `u32::MAX`, the helper whose id is in
    /// the context's call target) with `r1`-`r5` as arguments. Afterwards, a tail call or an error
    /// leaves through the shared status routine.
    fn call_rust(&mut self, pc: u32, index: u32) {
        let status = self.call_status;
        self.ctx_r11();
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov [r11 + off::BUDGET], r12);
        }
        dynasm!(self.asm
            ; .arch x64
            ; mov DWORD [r11 + off::CALL_PC], pc as i32
            ; mov DWORD [r11 + off::CALL_INDEX], index as i32
            ; mov [r11 + off::CALL_FP], rbp
            ; mov r9, r11
        );
        self.call_thunk(self.thunks.call, true);
        self.ctx_r11();
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov r12, [r11 + off::BUDGET]);
        }
        dynasm!(self.asm
            ; .arch x64
            ; cmp BYTE [r11 + off::CALL_STATUS], 0
            ; jne =>status
        );
    }

    /// The direct form of the call to helper `index` at `pc` ([`moat_exec::DirectCall`]), where
    /// the verifier proved what the helper would check there: its map (`r1`) and that its memory
    /// arguments are in bounds of the stack. Not for confined code, whose calls into Rust go
    /// through the context.
    fn direct_call(&self, linked: &Linked, pc: usize, index: u32) -> Option<moat_exec::DirectCall> {
        if self.thunks.confined {
            return None;
        }
        let map = self.proofs.map_call(pc)?;
        let helper = linked.helpers().get(index as usize)?;
        (helper.direct.as_ref()?)(map)
    }

    /// Calls the Rust function at `thunk`, its arguments in place and `r9` = the run context. Confined
    /// code switches to the host's stack and PKRU around the call; other code calls on its own
    /// stack, `realign`ed by 8 bytes where the call site's stack is off by that much. Keeps `rax`
    /// (the result) and clobbers `r10`.
    fn call_thunk(&mut self, thunk: u64, realign: bool) {
        if self.thunks.confined {
            self.switch_to_host();
        } else if realign {
            dynasm!(self.asm ; .arch x64 ; sub rsp, 8);
        }
        dynasm!(self.asm ; .arch x64 ; mov r10, QWORD thunk as i64 ; call r10);
        if self.thunks.confined {
            self.switch_back_from_host();
        } else if realign {
            dynasm!(self.asm ; .arch x64 ; add rsp, 8);
        }
    }

    /// PKRU = 0 (every key: the host's rights); clobbers `rax`, `rcx` and `rdx`.
    fn allow_all_keys(&mut self) {
        dynasm!(self.asm ; .arch x64 ; xor eax, eax ; xor ecx, ecx ; xor edx, edx);
        self.asm.extend(WRPKRU);
    }

    /// Confined code, before a call into Rust with `r9` = the context: PKRU = the host's (every
    /// key), then onto the host's stack (from the anchor), where the domain's stack pointer is
    /// saved; the anchor records it for entries nested in the call. Keeps `rdi`-`r9`.
    fn switch_to_host(&mut self) {
        dynasm!(self.asm ; .arch x64 ; mov r11, rdx ; mov r10, rcx);
        self.allow_all_keys();
        dynasm!(self.asm
            ; .arch x64
            ; mov rcx, r10
            ; mov rdx, r11
            ; mov r10, rsp
            ; mov rsp, [r9 + off::HOST_RSP]
            ; mov [r9 + off::DOMAIN_RSP], r10
            ; push r10
            ; push r10
        );
    }

    /// Confined code, after the call into Rust: back onto the domain's stack and PKRU (from the
    /// anchor). Keeps `rax`.
    fn switch_back_from_host(&mut self) {
        dynasm!(self.asm
            ; .arch x64
            ; add rsp, 8
            ; pop rsp
            ; mov r9, rax
        );
        self.ctx_r11();
        dynasm!(self.asm
            ; .arch x64
            ; mov eax, DWORD [r11 + off::PKRU]
            ; xor ecx, ecx
            ; xor edx, edx
        );
        self.asm.extend(WRPKRU);
        dynasm!(self.asm ; .arch x64 ; mov rax, r9);
    }

    /// Fails with `CallDepth` at `pc` if the current frame is the last one the stack has room for.
    fn depth_check(&mut self, pc: u32) {
        let entry = self.asm.new_dynamic_label();
        let last = (STACK_SIZE as i32 - (moat_exec::MAX_CALL_DEPTH as i32 - 1) * FRAME)
            & (STACK_SIZE as i32 - 1);
        dynasm!(self.asm
            ; .arch x64
            ; mov r10, rbp
            ; and r10d, (STACK_SIZE - 1) as i32
            ; cmp r10d, last
            ; je =>entry
        );
        self.cold.push(Cold::Error {
            entry,
            kind: ERR_CALL_DEPTH,
            pc,
        });
    }

    /// A call to a local function: the caller saves `r6`-`r9` (and 8 bytes to keep the native stack's
    /// alignment the same in every function), moves `r10` one frame down, calls, and undoes it all.
    fn local_call(&mut self, call: impl FnOnce(&mut Asm)) {
        dynasm!(self.asm
            ; .arch x64
            ; sub rsp, 8
            ; push rbx
            ; push r13
            ; push r14
            ; push r15
            ; sub rbp, FRAME
        );
        call(&mut self.asm);
        dynasm!(self.asm
            ; .arch x64
            ; add rbp, FRAME
            ; pop r15
            ; pop r14
            ; pop r13
            ; pop rbx
            ; add rsp, 8
        );
    }

    fn callx(&mut self, pc: u32, d: u8) {
        let helper = self.asm.new_dynamic_label();
        let done = self.asm.new_dynamic_label();
        let bad = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; mov r11, Rq(d)
            ; shr r11, 48
            ; cmp r11d, (CODE_ADDRESS_TAG >> 48) as i32
            ; jne =>helper
            ; mov r11d, Rd(d)
            ; mov r10, QWORD self.slots as i64
            ; cmp r11, r10
            ; jae =>bad
            ; mov r10, QWORD self.table as i64
            ; mov r11, [r10 + r11 * 8]
            ; test r11, r11
            ; jz =>bad
        );
        self.poll(pc as usize);
        self.depth_check(pc);
        self.local_call(|asm| dynasm!(asm ; .arch x64 ; call r11));
        dynasm!(self.asm ; .arch x64 ; jmp =>done ; =>helper);
        self.ctx_r11();
        dynasm!(self.asm ; .arch x64 ; mov r10, Rq(d) ; mov [r11 + off::CALL_TARGET], r10);
        self.call_rust(pc, u32::MAX);
        dynasm!(self.asm ; .arch x64 ; =>done);
        self.cold.push(Cold::BadTarget {
            entry: bad,
            pc,
            reg: d,
        });
    }

    fn cold_code(&mut self) {
        let raise = self.raise;
        let tramp = self.check_tramp;
        for stub in std::mem::take(&mut self.cold) {
            match stub {
                Cold::Mem {
                    entry,
                    back,
                    info,
                    len,
                    stack_done,
                    atomic,
                    address,
                } => {
                    dynasm!(self.asm ; .arch x64 ; =>entry);
                    if let Some((b, off)) = address {
                        dynasm!(self.asm ; .arch x64 ; lea r11, [Rq(b) + off]);
                    }
                    if !stack_done && !atomic {
                        let slow = self.asm.new_dynamic_label();
                        self.inline_stack_check(len, slow);
                        dynasm!(self.asm ; .arch x64 ; jmp =>back ; =>slow);
                    }
                    dynasm!(self.asm
                        ; .arch x64
                        ; mov r10, QWORD info as i64
                        ; call =>tramp
                        ; jmp =>back
                    );
                }
                Cold::Budget { entry, block, n } => {
                    dynasm!(self.asm
                        ; .arch x64
                        ; =>entry
                        ; add r12, n
                        ; mov r9, r12
                        ; mov r10, QWORD (ERR_BUDGET << 32 | u64::from(block)) as i64
                        ; jmp =>raise
                    );
                }
                Cold::Poll { entry, back, pc } => {
                    // The trampoline leaves ZF set when the run goes on.
                    let stop = self.asm.new_dynamic_label();
                    let poll_tramp = self.poll_tramp;
                    dynasm!(self.asm
                        ; .arch x64
                        ; =>entry
                        ; call =>poll_tramp
                        ; jnz =>stop
                        ; jmp =>back
                        ; =>stop
                        ; mov r10, QWORD (ERR_INTERRUPTED << 32 | u64::from(pc)) as i64
                        ; jmp =>raise
                    );
                }
                Cold::Error { entry, kind, pc } => {
                    dynasm!(self.asm
                        ; .arch x64
                        ; =>entry
                        ; mov r10, QWORD (kind << 32 | u64::from(pc)) as i64
                        ; jmp =>raise
                    );
                }
                Cold::BadTarget { entry, pc, reg } => {
                    dynasm!(self.asm
                        ; .arch x64
                        ; =>entry
                        ; mov r9, Rq(reg)
                        ; mov r10, QWORD (ERR_BAD_TARGET << 32 | u64::from(pc)) as i64
                        ; jmp =>raise
                    );
                }
            }
        }
    }

    /// Routines every stub shares: `raise` (record `r10` = kind << 32 | pc and `r9` = detail, then
    /// unwind to the entry trampoline), the out-of-line memory check, the status check after a call
    /// into Rust and the zero exit of legacy packet loads.
    fn shared(&mut self) {
        let raise = self.raise;
        let unwind = self.unwind;
        let pending = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; =>raise
            ; lea r11, [rbp - 1]
            ; or r11, (STACK_SIZE - 1) as i32
            ; inc r11
            ; mov [r11 + off::ERR_CODE], r10
            ; mov [r11 + off::ERR_AUX], r9
        );
        if self.count_budget {
            dynasm!(self.asm ; .arch x64 ; mov [r11 + off::BUDGET], r12);
        }
        dynasm!(self.asm
            ; .arch x64
            ; mov eax, 1
            ; jmp =>unwind
            ; =>pending
            ; mov r10, QWORD (ERR_PENDING << 32) as i64
            ; jmp =>raise
        );
        // The fault landing: the fault handler resumed here with r11 = the faulting instruction's
        // address, r10 = the error code and r9 = the faulting address.
        let landing = self.landing;
        dynasm!(self.asm
            ; .arch x64
            ; =>landing
            ; mov rax, r11
        );
        if self.thunks.confined {
            // The run is over: back to the host's PKRU at once (not every kernel restores the
            // interrupted PKRU on return from the handler).
            dynasm!(self.asm ; .arch x64 ; mov rsi, rax);
            self.allow_all_keys();
            dynasm!(self.asm ; .arch x64 ; mov rax, rsi);
        }
        dynasm!(self.asm
            ; .arch x64
            ; lea r11, [rbp - 1]
            ; or r11, (STACK_SIZE - 1) as i32
            ; inc r11
            ; mov [r11 + off::FAULT_RIP], rax
            ; jmp =>raise
        );
        let zero = self.ldabs_zero;
        dynasm!(self.asm
            ; .arch x64
            ; =>zero
            ; mov r10, QWORD (ERR_LDABS_ZERO << 32) as i64
            ; jmp =>raise
        );
        // After a call into Rust: status 1 = a tail call ran, its r0 is in rax: return from the
        // current function; anything else = an error is pending.
        let status = self.call_status;
        dynasm!(self.asm
            ; .arch x64
            ; =>status
            ; cmp BYTE [r11 + off::CALL_STATUS], 1
            ; jne =>pending
            ; ret
        );
        // The complete check: r11 = address, r10 = info. Preserves every eBPF register; on success
        // r11 = the address to access (an atomic's in-place alias may differ from the one checked).
        let tramp = self.check_tramp;
        let fail = self.asm.new_dynamic_label();
        dynasm!(self.asm
            ; .arch x64
            ; =>tramp
            ; push rax
            ; push rdi
            ; push rsi
            ; push rdx
            ; push rcx
            ; push r8
            ; push r11
            ; push r10
            ; lea rdi, [rbp - 1]
            ; or rdi, (STACK_SIZE - 1) as i32
            ; inc rdi
            ; mov rsi, r11
            ; mov rdx, r10
            ; mov rcx, rbp
        );
        dynasm!(self.asm ; .arch x64 ; mov r9, rdi);
        self.call_thunk(self.thunks.check, false);
        dynasm!(self.asm
            ; .arch x64
            ; test rax, rax
            ; jz >denied
            ; mov [rsp + 8], rax
            ; denied:
            ; pop r10
            ; pop r11
            ; pop r8
            ; pop rcx
            ; pop rdx
            ; pop rsi
            ; pop rdi
            ; pop rax
            ; jz =>fail
            ; ret
            ; =>fail
            ; jmp =>pending
        );
        // A polling point found the flag set: `jit_poll(ctx)` runs the thread's poll hook (which
        // may switch to other work and back). Preserves every eBPF register; ZF set: go on.
        let poll_tramp = self.poll_tramp;
        dynasm!(self.asm
            ; .arch x64
            ; =>poll_tramp
            ; push rax
            ; push rdi
            ; push rsi
            ; push rdx
            ; push rcx
            ; push r8
            ; push r11
            ; push r10
            ; lea rdi, [rbp - 1]
            ; or rdi, (STACK_SIZE - 1) as i32
            ; inc rdi
            ; mov r9, rdi
        );
        self.call_thunk(self.thunks.poll, false);
        dynasm!(self.asm
            ; .arch x64
            ; test eax, eax
            ; pop r10
            ; pop r11
            ; pop r8
            ; pop rcx
            ; pop rdx
            ; pop rsi
            ; pop rdi
            ; pop rax
            ; ret
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_start_at_targets_and_after_branches() {
        let src = "mov %r0, 0\nmov %r1, 3\nadd %r0, %r1\nsub %r1, 1\njne %r1, 0, -3\nexit";
        let program = Program::new(&moat_isa::assemble_bytes(src).expect("asm")).expect("ok");
        let (ids, list) = blocks(&program);
        assert_eq!(ids, vec![Some(0), None, Some(1), None, None, Some(2)]);
        assert_eq!(list, vec![vec![0, 1], vec![2, 3, 4], vec![5]]);
    }
}
