//! moat's JIT: linked eBPF programs compiled to x86-64 machine code.
//!
//! [`JitProgram::new`] compiles a [`moat_exec::Linked`] program in one pass (a direct emitter,
//! registers pinned like the Linux kernel's JIT) into shared executable memory ([`codemem`], packed
//! like the kernel's BPF prog pack). The compiled program has the interpreter's semantics exactly:
//! the same helpers and `lddw` values (both come from the linked program), the same memory regions,
//! limits and typed errors at the same instruction. Memory accesses are checked at run time against
//! the run's [`moat_exec::MemoryMap`] unless the verifier proved them ([`ProvenAccesses`], which only
//! `moat-verify` makes without `unsafe`); the instruction budget is counted per basic block,
//! exactly, unless the verifier proved that every path ends.
//!
//! What a proof removes depends on the program's [`Confinement`]: without isolation, the check;
//! under software fault isolation ([`Sfi`]), only the typed-error check, never the confinement to
//! the program's domain; under memory protection keys ([`Confinement::Mpk`]) the code runs
//! *confined*: its entry switches to a native stack and run area inside the program's protection
//! domain and sets PKRU to the domain's value ([`confine`]), so generated code can reach nothing but
//! the domain's memory; every call into Rust (helpers, the complete memory check) runs with the
//! host's PKRU.
//!
//! Running compiled code needs no `unsafe` from the caller: all of it is in `codemem` (the
//! executable memory), `run` (entering generated code and the Rust functions it calls) and `fault`
//! (the `SIGSEGV` handler that turns a hardware fault in generated code into a run-time error).

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

#[expect(
    unsafe_code,
    reason = "executable memory: mapping code and its writable view"
)]
pub mod codemem;
mod dump;
mod emit;
#[expect(
    unsafe_code,
    reason = "the SIGSEGV handler that resumes generated code at its fault landing"
)]
mod fault;
pub mod raise;
#[expect(
    unsafe_code,
    reason = "entering generated code and the Rust functions it calls"
)]
mod run;
mod watchdog;

use moat_exec::{
    Buffer, LinkError, Linked, LinkedHelper, MemoryMap, ProgramRunner, Region, RunError, RunState,
    CODE_ADDRESS_TAG,
};
pub use moat_verify::{ProvenAccesses, ProvenMemory};
use std::sync::Arc;
use thiserror::Error;

pub use codemem::{CodeStats, StrategyFigures};
pub use dump::{CodePart, NativeInsn};
pub use fault::install as install_fault_handler;
pub use run::{set_poll_hook, Interrupter, PollHook, MIN_CONFINEMENT};
pub use watchdog::{Armed, Watchdog, DEFAULT_SPIN};

/// Why a program could not be compiled.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum JitError {
    /// The linked program cannot be compiled (a branch or call the linker would have refused).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// Executable memory could not be mapped.
    #[error("cannot map executable memory")]
    Memory(#[source] std::io::Error),
    /// Confined code was asked for where the CPU or kernel has no memory protection keys.
    #[error("confined code needs memory protection keys, which this CPU or kernel lacks")]
    NoProtectionKeys,
}

/// A range of memory, `[start, start + len)`: under software fault isolation, part of a program's
/// protection domain (its arena, its low area).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone {
    /// First byte.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// Bytes of inaccessible guard memory on both sides (accesses into them fault). A zone with
    /// guards wider than any displacement (32 KiB) and access is checked by its base register
    /// alone, once per basic block.
    pub guard: u64,
}

/// Software fault isolation for accesses the verifier proved (`--isolation sfi`): such an access
/// keeps no typed-error check of its own, but is still confined. It is checked inline against the
/// memory the verifier said it touches (the stack window for stack accesses, `context_and_packet`
/// for the context and packet, `arena` for the rest); when that check fails — the access goes
/// elsewhere, which a correct verifier never lets happen, or to memory of the run outside the
/// domain such as a host-created map — it is checked completely against the run's regions, like an
/// unproven access, and fails with a typed error if it is outside all of them. A wrong verifier
/// therefore cannot make generated code touch anything but the program's domain and its own
/// regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sfi {
    /// The domain's arena: maps, buffer and tracing contexts, ring buffer records.
    pub arena: Zone,
    /// Where the context and packet of packet programs live (the domain's low area); the arena
    /// for other programs.
    pub context_and_packet: Zone,
}

/// Which check a proven memory access tries first under [`Sfi`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstCheck {
    /// The live stack window.
    Stack,
    /// A zone of the program's domain.
    Zone(Zone),
}

impl Sfi {
    pub(crate) fn first_check(&self, memory: ProvenMemory) -> FirstCheck {
        match memory {
            ProvenMemory::Stack => FirstCheck::Stack,
            ProvenMemory::ContextOrPacket => FirstCheck::Zone(self.context_and_packet),
            ProvenMemory::Other => FirstCheck::Zone(self.arena),
        }
    }
}

/// How far generated code relies on the verifier's proofs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confinement {
    /// No isolation: a proven access runs with no check.
    Unconfined,
    /// Software fault isolation: a proven access is still confined ([`Sfi`]).
    Sfi(Sfi),
    /// Memory protection keys: the code runs confined ([`confine`]); a proven access runs with no
    /// software check, the hardware stops it outside the domain.
    Mpk,
}

/// How a program's code is generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeOptions {
    /// What a proof removes.
    pub confinement: Confinement,
    /// Polling points at loop back-edges and calls: a load and a branch on the run's interrupt
    /// flag ([`Interrupter`]), in verified code too. On by default; off only to measure their cost.
    pub polling: bool,
    /// Every run is bounded in time by a [`Watchdog`]: with polling points, no instruction budget
    /// is counted even where the verifier did not prove termination (the watchdog stops a runaway
    /// loop at its back-edge instead). Off by default.
    pub time_bounded: bool,
    /// A raised loop entered with fewer elements to go than this runs its own code: a few
    /// instructions at the header compare its induction variable's distance from the bound
    /// (`moat_raise::Distance`) first, since below it the call into the plan costs more than
    /// the loop. 0: the plan is always asked. [`RAISE_MIN_ELEMENTS`] by default.
    pub raise_min_elements: u32,
}

/// The default of [`CodeOptions::raise_min_elements`]: below about 128 elements the call into a
/// plan (registers stored, the run's memory map checked for the whole range, the live-out values
/// computed: ≈ 25 ns) cost more than the loop on every operation measured (BENCHMARKS.md, "Loop
/// raising": `fill` breaks even near 128 bytes, 16-bit sums near 128 elements).
pub const RAISE_MIN_ELEMENTS: u32 = 128;

impl CodeOptions {
    /// `confinement`, with polling points.
    pub fn new(confinement: Confinement) -> CodeOptions {
        CodeOptions {
            confinement,
            polling: true,
            time_bounded: false,
            raise_min_elements: RAISE_MIN_ELEMENTS,
        }
    }
}

/// A program compiled to native code, with another engine's form of it for runs the JIT did not
/// start (a tail call from an interpreted program).
pub struct JitProgram {
    linked: Arc<Linked>,
    fallback: Arc<dyn ProgramRunner>,
    code: codemem::CodePiece,
    /// Native address of the instruction at each slot (0: none), read by `callx`.
    table: Box<[u64]>,
    blocks: Vec<Vec<usize>>,
    slot_offsets: Vec<u32>,
    body_start: u32,
    body_end: u32,
    landing: u32,
    confined: bool,
    sfi: Option<Sfi>,
    /// Unique among the process's programs (never reused): whose residue a run area's stack holds.
    run_id: u64,
    /// The loops whose headers call their plans ([`raise`]), by the index the code passes.
    raised: Vec<moat_raise::RaisedLoop>,
    /// Whether the code counts an instruction budget.
    counts_budget: bool,
    /// What raising found of every loop, raised or not.
    loop_reports: Vec<raise::LoopReport>,
    /// Bytes below the stack top a run may leave data in: the verifier's proven extent, or the
    /// whole stack where none was proven or another program may run on the same stack (a tail
    /// call, a `callx` to a helper id).
    stack_extent: u32,
    /// What the code's direct helper calls refer to (maps), kept alive with the code.
    _direct: Vec<Arc<dyn std::any::Any + Send + Sync>>,
}

/// The next [`JitProgram::run_id`].
static NEXT_RUN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for JitProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JitProgram")
            .field("code", &self.code)
            .field("slots", &self.table.len())
            .finish()
    }
}

impl JitProgram {
    /// Compiles `linked`. `proofs` (from the verifier) say which memory accesses need no typed-error
    /// check and whether the budget needs counting; `options` what a proof removes (see
    /// [`Confinement`]) and whether the code polls for interrupts. `fallback` (the interpreter's form of the same program) runs the program's
    /// functions and tail calls when something other than this JIT's code starts them. Fails with
    /// [`JitError::NoProtectionKeys`] for [`Confinement::Mpk`] where the CPU or kernel lacks them.
    pub fn new(
        linked: Arc<Linked>,
        fallback: Arc<dyn ProgramRunner>,
        proofs: &ProvenAccesses,
        options: &CodeOptions,
    ) -> Result<JitProgram, JitError> {
        JitProgram::new_raised(linked, fallback, proofs, options, raise::Raising::default())
    }

    /// As [`JitProgram::new`], with the loops `raising` raised (from [`raise::raise_loops`] on
    /// the verified form of the same program): each one's header calls its plan, with the loop's
    /// own code as the fallback wherever the plan does not apply ([`raise`]). Loops that do not
    /// fit the program are left as they are. The reports on every loop are kept
    /// ([`JitProgram::loop_reports`]).
    pub fn new_raised(
        linked: Arc<Linked>,
        fallback: Arc<dyn ProgramRunner>,
        proofs: &ProvenAccesses,
        options: &CodeOptions,
        raising: raise::Raising,
    ) -> Result<JitProgram, JitError> {
        let raised = raise::fitting(linked.program(), raising.loops);
        let loop_reports = raising.reports;
        let loops: Vec<emit::RaisedHeader> = raised
            .iter()
            .map(|l| emit::RaisedHeader {
                header: l.header,
                latch: l.latch,
                short: (options.raise_min_elements > 0)
                    .then(|| (l.plan.distance(), options.raise_min_elements)),
            })
            .collect();
        let counts_budget = !(proofs.terminates() || options.time_bounded && options.polling);
        let confinement = options.confinement;
        let confined = confinement == Confinement::Mpk;
        if confined && !protection_keys_available() {
            return Err(JitError::NoProtectionKeys);
        }
        let sfi = match confinement {
            Confinement::Sfi(sfi) => Some(sfi),
            _ => None,
        };
        fault::install();
        let mut table = vec![0u64; linked.program().slots()].into_boxed_slice();
        let compiled = emit::compile(
            &linked,
            proofs,
            sfi.as_ref(),
            counts_budget,
            options.polling,
            run::thunks(confined),
            table.as_ptr() as u64,
            &loops,
        )?;
        let code = codemem::CodePiece::new(&compiled.code).map_err(JitError::Memory)?;
        for (entry, off) in table.iter_mut().zip(&compiled.slot_offsets) {
            if *off != u32::MAX {
                *entry = code.addr() + u64::from(*off);
            }
        }
        let tail_call = linked
            .helpers()
            .iter()
            .any(|h| h.id == moat_exec::TAIL_CALL_HELPER)
            || linked
                .program()
                .insns()
                .iter()
                .any(|(_, i)| matches!(i, moat_isa::Insn::CallX { .. }));
        let stack_extent = match proofs.stack_extent() {
            Some(e) if !tail_call => e.min(run::STACK_SIZE as u32),
            _ => run::STACK_SIZE as u32,
        };
        Ok(JitProgram {
            stack_extent,
            _direct: compiled.keep,
            linked,
            fallback,
            code,
            table,
            blocks: compiled.blocks,
            slot_offsets: compiled.slot_offsets,
            body_start: compiled.body_start,
            body_end: compiled.body_end,
            landing: compiled.landing,
            confined,
            sfi,
            run_id: NEXT_RUN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            raised,
            counts_budget,
            loop_reports,
        })
    }

    /// The loops whose headers call their plans.
    pub fn raised_loops(&self) -> &[moat_raise::RaisedLoop] {
        &self.raised
    }

    /// What raising found of every loop of the program (empty when it was compiled without
    /// raising): raised into what, or why not, with the synthesis counts and time.
    pub fn loop_reports(&self) -> &[raise::LoopReport] {
        &self.loop_reports
    }

    pub(crate) fn raised_loop(&self, index: usize) -> Option<&moat_raise::RaisedLoop> {
        self.raised.get(index)
    }

    pub(crate) fn counts_budget(&self) -> bool {
        self.counts_budget
    }

    /// The program's identity for run areas (unique, never reused).
    pub(crate) fn run_id(&self) -> u64 {
        self.run_id
    }

    /// Bytes below the stack top a run of the program may leave data in.
    pub(crate) fn stack_extent(&self) -> u32 {
        self.stack_extent
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
        run::run_fresh(self, buffers, args).map_err(|e| *e)
    }

    /// As [`JitProgram::run_with`], the error boxed: the result then comes back in registers,
    /// which saves callers that run a program millions of times (probes) copying an error-sized
    /// value through every layer on the way back.
    pub fn run_with_boxed(
        &self,
        buffers: &mut [Buffer<'_>],
        args: [u64; 5],
    ) -> Result<u64, Box<RunError>> {
        run::run_fresh(self, buffers, args)
    }

    /// The linked program.
    pub fn linked(&self) -> &Arc<Linked> {
        &self.linked
    }

    /// Bytes of machine code.
    pub fn code_len(&self) -> usize {
        self.code.bytes().len()
    }

    /// The machine code.
    pub fn code(&self) -> &[u8] {
        self.code.bytes()
    }

    /// The generated machine code, decoded: each native instruction with the part of the code it
    /// belongs to (the entry trampoline, an eBPF instruction's slot, the cold stubs), its offset,
    /// bytes and Intel-syntax text, whose branch targets inside the code are labels (`pc 7`).
    pub fn native_code(&self) -> Vec<NativeInsn> {
        dump::decode(
            self.code.bytes(),
            self.code.addr(),
            &self.slot_offsets,
            self.body_end,
        )
    }

    /// The generated machine code, disassembled (Intel syntax), each eBPF instruction's code under
    /// its slot index, branch targets as labels (see [`JitProgram::native_code`]).
    pub fn disassemble(&self) -> String {
        dump::disassemble(
            self.code.bytes(),
            self.code.addr(),
            &self.slot_offsets,
            self.body_end,
        )
    }

    pub(crate) fn code_addr(&self) -> u64 {
        self.code.addr()
    }

    /// Whether the program was compiled as confined code.
    pub fn is_confined(&self) -> bool {
        self.confined
    }

    /// (first instruction, end of code, fault landing) as native addresses, for the fault handler.
    pub(crate) fn fault_range(&self) -> (u64, u64, u64) {
        let base = self.code.addr();
        if self.landing == u32::MAX {
            return (0, 0, 0);
        }
        (
            base + u64::from(self.body_start),
            base + self.code.bytes().len() as u64,
            base + u64::from(self.landing),
        )
    }

    /// The slot whose code contains the native address `rip`.
    pub(crate) fn slot_at(&self, rip: u64) -> Option<usize> {
        let off = u32::try_from(rip.checked_sub(self.code.addr())?).ok()?;
        if off >= self.body_end {
            return None;
        }
        self.slot_offsets
            .iter()
            .enumerate()
            .filter(|&(_, &o)| o != u32::MAX && o <= off)
            .max_by_key(|&(_, &o)| o)
            .map(|(slot, _)| slot)
    }

    /// The start of the program's arena under software fault isolation (0 otherwise).
    pub(crate) fn sfi_arena(&self) -> u64 {
        self.sfi.map_or(0, |s| s.arena.start)
    }

    pub(crate) fn budget(&self) -> u64 {
        self.linked.budget()
    }

    pub(crate) fn static_regions(&self) -> &[Region] {
        self.linked.static_regions()
    }

    pub(crate) fn atomic_aliases(&self) -> Option<std::sync::Arc<[moat_exec::AtomicAlias]>> {
        self.linked.atomic_aliases()
    }

    pub(crate) fn helper(&self, index: u32) -> Option<&LinkedHelper> {
        self.linked.helpers().get(index as usize)
    }

    pub(crate) fn block_slots(&self, block: usize) -> Option<&Vec<usize>> {
        self.blocks.get(block)
    }

    /// The native address of the instruction at `slot`.
    pub(crate) fn native(&self, slot: usize) -> Option<u64> {
        self.table.get(slot).copied().filter(|&a| a != 0)
    }

    fn native_of_code_address(&self, addr: u64) -> Option<u64> {
        if addr & 0xffff_0000_0000_0000 != CODE_ADDRESS_TAG {
            return None;
        }
        self.native((addr & 0xffff_ffff) as usize)
    }
}

impl ProgramRunner for JitProgram {
    fn is_function(&self, addr: u64) -> bool {
        self.native_of_code_address(addr).is_some()
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
        self.linked
            .function_at(addr)
            .and_then(|slot| run::enter_nested(self, mem, state, slot, args, frame_top))
            .unwrap_or_else(|| {
                self.fallback
                    .run_function(mem, addr, args, frame_top, depth, state)
            })
    }

    fn run_tail(
        &self,
        mem: &mut MemoryMap,
        ctx: u64,
        frame_top: u64,
        depth: usize,
        state: &mut RunState,
    ) -> Result<u64, RunError> {
        run::enter_nested(self, mem, state, 0, [ctx, 0, 0, 0, 0], frame_top)
            .unwrap_or_else(|| self.fallback.run_tail(mem, ctx, frame_top, depth, state))
    }
}

/// Whether this CPU and kernel have memory protection keys enabled (what confined code needs).
pub fn protection_keys_available() -> bool {
    run::pkru::available()
}

/// Runs `f` with `area` offered to the confined programs it runs on this thread: the outermost
/// run of a confined program ([`JitProgram::new_confined`]) puts its eBPF stack and run context at
/// the top of `area` and its native stack below them, and sets PKRU to `pkru` while generated code
/// runs. `area` should be memory of the program's protection domain, at least
/// [`MIN_CONFINEMENT`] bytes (else such runs fail with an out-of-bounds error), and PKRU when `f`
/// runs must allow it. Unconfined programs ignore the offer.
pub fn confine<R>(area: &mut [u8], pkru: u32, f: impl FnOnce() -> R) -> R {
    run::offer((area.as_mut_ptr() as u64, area.len() as u64), pkru, f)
}

/// Executable memory in use by all compiled programs of the process.
pub fn code_stats() -> CodeStats {
    codemem::stats()
}
