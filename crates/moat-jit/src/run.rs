//! Running compiled code: the per-run context generated code reads, the Rust functions it calls
//! (helpers, the complete memory check) and the entry into generated code. Together with
//! [`crate::codemem`] and [`crate::fault`], the only places of `moat-jit` with `unsafe`.
//!
//! A run owns a [`RunArea`] of three pages: the eBPF stack ([`STACK_SIZE`] bytes, aligned to its
//! size), the [`JitCtx`] generated code reads and writes, and the [`RunAnchor`]: what the runtime
//! trusts (the host's stack pointer, the PKRU value of confined code, the Rust objects of the run).
//! Generated code finds both from `r10` alone and only ever reads the anchor; in confined runs the
//! anchor's page is read-only for the domain. Every entry into generated code goes through the
//! trampoline at offset 0 of the program's code, which records the host's stack pointer in the
//! anchor; a failing check records the error and restores that stack pointer, returning status 1
//! to [`enter`]. No Rust frame is ever unwound by generated code: calls into Rust return normally
//! and report errors through the context.
//!
//! Confined code (`mpk`) runs on a native stack inside the domain (below the run area) with the
//! domain's PKRU, and every call into Rust switches to the host's stack and PKRU first, so Rust
//! never runs on memory the program can write and no host return address lies in the domain.

use crate::JitProgram;
use moat_exec::{
    HelperCtx, HelperError, LinkedHelper, MemoryMap, Region, RunError, RunErrorKind, RunState,
    TailCall, STACK_BYTES, STACK_FRAME_SIZE,
};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, Ordering};
use std::sync::Arc;

/// Bytes of the eBPF stack of a run (all frames); also its alignment.
pub(crate) const STACK_SIZE: u64 = STACK_BYTES;

/// Error kinds generated code raises (`ERR_CODE >> 32`).
pub(crate) const ERR_PENDING: u64 = 1;
pub(crate) const ERR_BUDGET: u64 = 2;
pub(crate) const ERR_CALL_DEPTH: u64 = 3;
pub(crate) const ERR_BAD_TARGET: u64 = 4;
pub(crate) const ERR_LDABS_ZERO: u64 = 5;
/// Set by the fault handler ([`crate::fault`]); the low bits are the signal's `si_code`.
pub(crate) const ERR_FAULT: u64 = 6;
/// A polling point found the run's interrupt flag set.
pub(crate) const ERR_INTERRUPTED: u64 = 7;
/// `si_code` of a protection-key fault.
const SEGV_PKUERR: u64 = 4;

/// The per-run context right above the eBPF stack, read and written by generated code at the
/// offsets of [`off`]. Nothing in it is trusted by the runtime.
#[repr(C, align(4096))]
pub(crate) struct JitCtx {
    budget: u64,
    frame_top: u64,
    args: [u64; 5],
    r0_start: u64,
    r0_len: u64,
    w0_start: u64,
    w0_len: u64,
    pkt_start: u64,
    pkt_len: u64,
    ret: u64,
    call_pc: u32,
    call_index: u32,
    call_target: u64,
    call_fp: u64,
    call_status: u64,
    err_code: u64,
    err_aux: u64,
    /// Set by the fault landing: the address of the faulting instruction.
    fault_rip: u64,
    /// Under software fault isolation: the start of the running program's arena, against which
    /// code without a budget checks proven accesses (`moat_jit::Sfi`). Not reachable by the
    /// program: the context is not in its domain and no check admits it.
    sfi_arena: u64,
    /// A raised loop's entry: `r0`-`r10` stored by generated code before it calls
    /// [`jit_raise`], and the live-out values it reloads afterwards.
    raise_regs: [u64; 11],
}

/// The page right above the context: what the runtime relies on during a run. Generated code only
/// reads it (the stack pointers and PKRU value at entry, exit and around calls into Rust); Rust
/// writes it. In confined runs the page carries a protection key the domain may only read.
#[repr(C, align(4096))]
pub(crate) struct RunAnchor {
    /// The host's stack pointer at the innermost entry (16-aligned).
    host_rsp: u64,
    /// Confined code: where the next entry's native stack starts (the run's native stack top for
    /// the outermost entry, the caller's stack pointer for nested ones).
    domain_rsp: u64,
    /// Confined code: the PKRU value generated code runs with.
    pkru: u64,
    prog: *const JitProgram,
    mem: *mut MemoryMap,
    state: *mut RunState,
    pending: Option<RunError>,
    /// The interrupt flag polling points read (non-zero: stop at the next one); written by the
    /// thread's [`Interrupter`]s while the run is registered with the thread's [`Poller`].
    poll: AtomicU32,
}

impl RunAnchor {
    fn new() -> RunAnchor {
        RunAnchor {
            host_rsp: 0,
            domain_rsp: 0,
            pkru: 0,
            prog: std::ptr::null(),
            mem: std::ptr::null_mut(),
            state: std::ptr::null_mut(),
            pending: None,
            poll: AtomicU32::new(0),
        }
    }
}

/// The interrupt requests of one thread: what its [`Interrupter`]s set and the polling points of
/// the run in progress on it read.
#[derive(Debug, Default)]
pub(crate) struct Poller {
    /// An interrupt was asked for and not yet delivered.
    requested: AtomicBool,
    /// The interrupt flag of the run in progress on the thread (null: none).
    current: AtomicPtr<AtomicU32>,
    /// An interrupter is writing through `current`: a run must not leave (its anchor could go
    /// away) until it is done.
    busy: AtomicBool,
}

thread_local! {
    static POLLER: Arc<Poller> = Arc::new(Poller::default());
}

/// Stops JIT runs on one thread at their next polling point (a loop back-edge or a call), from
/// any thread: the mechanism time budgets and preemption use. The run ends with
/// `RunErrorKind::Interrupted` naming the instruction; if no run is in progress, the next run on
/// the thread stops at its first polling point. Each request stops one run.
#[derive(Debug, Clone)]
pub struct Interrupter {
    poller: Arc<Poller>,
}

impl Interrupter {
    /// The interrupter of the calling thread's runs.
    pub fn for_current_thread() -> Interrupter {
        Interrupter {
            poller: POLLER.with(Arc::clone),
        }
    }

    /// Asks the thread's run in progress (or its next run) to stop at its next polling point.
    pub fn interrupt(&self) {
        let p = &self.poller;
        p.busy.store(true, Ordering::SeqCst);
        p.requested.store(true, Ordering::SeqCst);
        let flag = p.current.load(Ordering::SeqCst);
        if !flag.is_null() {
            // SAFETY: `flag` is the interrupt flag in the anchor of the run registered on the
            // thread; while `busy` is set, that run cannot leave `enter` (it waits for `busy` after
            // unregistering), so its anchor is alive. An `AtomicU32` may be written from any thread.
            let raise = || unsafe { (*flag).store(1, Ordering::SeqCst) };
            if pkru::available() {
                // A confined run's anchor carries a protection key this thread may not write:
                // allow every key around the store.
                // SAFETY: protection keys exist (checked); PKRU is restored right after.
                unsafe {
                    let old = pkru::read();
                    pkru::write(0);
                    raise();
                    pkru::write(old);
                }
            } else {
                raise();
            }
        }
        p.busy.store(false, Ordering::SeqCst);
    }

    /// Withdraws a request not yet delivered.
    pub fn clear(&self) {
        self.poller.requested.store(false, Ordering::SeqCst);
    }

    /// Whether a request is waiting to be delivered (by a run's polling point).
    pub fn pending(&self) -> bool {
        self.poller.requested.load(Ordering::SeqCst)
    }
}

/// While alive, the run whose anchor holds `flag` receives the thread's interrupts (the previous
/// registration, of an enclosing run, is restored on drop). Registers only where an
/// [`Interrupter`] exists for the thread.
struct PollRegistration {
    poller: Option<(Arc<Poller>, *mut AtomicU32)>,
}

impl PollRegistration {
    fn new(flag: &AtomicU32) -> PollRegistration {
        let poller = POLLER.with(|p| (Arc::strong_count(p) > 1).then(|| p.clone()));
        let Some(poller) = poller else {
            flag.store(0, Ordering::Relaxed);
            return PollRegistration { poller: None };
        };
        let previous = poller
            .current
            .swap(flag as *const AtomicU32 as *mut AtomicU32, Ordering::SeqCst);
        flag.store(
            u32::from(poller.requested.load(Ordering::SeqCst)),
            Ordering::SeqCst,
        );
        PollRegistration {
            poller: Some((poller, previous)),
        }
    }

    /// Takes the request a polling point stopped the run for.
    fn deliver(&self) {
        if let Some((p, _)) = &self.poller {
            p.requested.store(false, Ordering::SeqCst);
        }
    }
}

impl Drop for PollRegistration {
    fn drop(&mut self) {
        if let Some((p, previous)) = self.poller.take() {
            p.current.store(previous, Ordering::SeqCst);
            while p.busy.load(Ordering::SeqCst) {
                std::hint::spin_loop();
            }
        }
    }
}

/// The kind of error generated code raised on the run whose context is `ctx`.
fn err_kind(ctx: *mut JitCtx) -> u64 {
    // SAFETY: called only after generated code returned: the context is the caller's again, and a
    // `u64` read of it is a plain read of initialised memory.
    unsafe { (*ctx).err_code >> 32 }
}

/// The anchor of the run whose context is `ctx`.
fn anchor(ctx: *mut JitCtx) -> *mut RunAnchor {
    (ctx as usize + std::mem::size_of::<JitCtx>()) as *mut RunAnchor
}

/// Field offsets of [`JitCtx`] for generated code.
pub(crate) mod off {
    use super::JitCtx;
    use super::RunAnchor;
    use std::mem::offset_of;
    pub const BUDGET: i32 = offset_of!(JitCtx, budget) as i32;
    pub const FRAME_TOP: i32 = offset_of!(JitCtx, frame_top) as i32;
    pub const ARGS: i32 = offset_of!(JitCtx, args) as i32;
    pub const R0_START: i32 = offset_of!(JitCtx, r0_start) as i32;
    pub const R0_LEN: i32 = offset_of!(JitCtx, r0_len) as i32;
    pub const W0_START: i32 = offset_of!(JitCtx, w0_start) as i32;
    pub const W0_LEN: i32 = offset_of!(JitCtx, w0_len) as i32;
    pub const PKT_START: i32 = offset_of!(JitCtx, pkt_start) as i32;
    pub const PKT_LEN: i32 = offset_of!(JitCtx, pkt_len) as i32;
    pub const RET: i32 = offset_of!(JitCtx, ret) as i32;
    pub const CALL_PC: i32 = offset_of!(JitCtx, call_pc) as i32;
    pub const CALL_INDEX: i32 = offset_of!(JitCtx, call_index) as i32;
    pub const CALL_TARGET: i32 = offset_of!(JitCtx, call_target) as i32;
    pub const CALL_FP: i32 = offset_of!(JitCtx, call_fp) as i32;
    pub const CALL_STATUS: i32 = offset_of!(JitCtx, call_status) as i32;
    pub const ERR_CODE: i32 = offset_of!(JitCtx, err_code) as i32;
    pub const ERR_AUX: i32 = offset_of!(JitCtx, err_aux) as i32;
    pub const FAULT_RIP: i32 = offset_of!(JitCtx, fault_rip) as i32;
    pub const SFI_ARENA: i32 = offset_of!(JitCtx, sfi_arena) as i32;
    pub const RAISE_REGS: i32 = offset_of!(JitCtx, raise_regs) as i32;
    /// Anchor fields, from the context (the anchor is the next page).
    const ANCHOR: i32 = std::mem::size_of::<JitCtx>() as i32;
    pub const HOST_RSP: i32 = ANCHOR + offset_of!(RunAnchor, host_rsp) as i32;
    pub const DOMAIN_RSP: i32 = ANCHOR + offset_of!(RunAnchor, domain_rsp) as i32;
    pub const PKRU: i32 = ANCHOR + offset_of!(RunAnchor, pkru) as i32;
    pub const POLL: i32 = ANCHOR + offset_of!(RunAnchor, poll) as i32;
}

/// The eBPF stack of one run, the context above it and the anchor above that.
#[repr(C, align(4096))]
pub(crate) struct RunArea {
    stack: [u8; STACK_SIZE as usize],
    ctx: JitCtx,
    anchor: RunAnchor,
}

const _: () = assert!(
    STACK_SIZE == 4096
        && std::mem::align_of::<RunArea>() == 4096
        && std::mem::size_of::<JitCtx>() == 4096
        && std::mem::size_of::<RunArea>() == 3 * 4096
);

impl RunArea {
    pub(crate) fn new() -> RunArea {
        RunArea {
            stack: [0; STACK_SIZE as usize],
            ctx: JitCtx::new(),
            anchor: RunAnchor::new(),
        }
    }
}

impl JitCtx {
    fn new() -> JitCtx {
        JitCtx {
            budget: 0,
            frame_top: 0,
            args: [0; 5],
            r0_start: u64::MAX,
            r0_len: 0,
            w0_start: u64::MAX,
            w0_len: 0,
            pkt_start: 0,
            pkt_len: 0,
            ret: 0,
            call_pc: 0,
            call_index: 0,
            call_target: 0,
            call_fp: 0,
            call_status: 0,
            err_code: 0,
            err_aux: 0,
            fault_rip: 0,
            sfi_arena: 0,
            raise_regs: [0; 11],
        }
    }
}

/// The addresses of the functions generated code calls.
pub(crate) fn thunks(confined: bool) -> crate::emit::Thunks {
    crate::emit::Thunks {
        call: jit_call as *const () as u64,
        check: jit_check as *const () as u64,
        poll: jit_poll as *const () as u64,
        raise: jit_raise as *const () as u64,
        confined,
    }
}

/// The PKRU register. Only called where the CPU and kernel have protection keys: for confined code,
/// which [`crate::JitProgram::new_confined`] compiles only then.
pub(crate) mod pkru {
    /// Reads PKRU.
    ///
    /// # Safety
    /// The CPU must support protection keys with `CR4.PKE` set (`OSPKE`), else this faults.
    pub(crate) unsafe fn read() -> u32 {
        let value: u32;
        // SAFETY: `rdpkru` (0f 01 ee) reads PKRU into eax and clobbers edx; it needs ecx = 0. The
        // caller guarantees the instruction exists.
        unsafe {
            std::arch::asm!(".byte 0x0f, 0x01, 0xee", in("ecx") 0, out("eax") value, out("edx") _,
                options(nomem, nostack, preserves_flags));
        }
        value
    }

    /// Writes PKRU.
    ///
    /// # Safety
    /// As for [`read`]; and the new value must not deny memory the caller goes on to use.
    pub(crate) unsafe fn write(value: u32) {
        // SAFETY: `wrpkru` (0f 01 ef) writes eax to PKRU; it needs ecx = edx = 0. The caller
        // guarantees the instruction exists and that the rights it sets suit what follows.
        unsafe {
            std::arch::asm!(".byte 0x0f, 0x01, 0xef", in("eax") value, in("ecx") 0, in("edx") 0,
                options(nostack, preserves_flags));
        }
    }

    /// Whether the CPU and kernel have protection keys enabled (CPUID.7.0:ECX.OSPKE). Asked of
    /// the CPU once: `cpuid` leaves a virtual machine, which costs microseconds.
    pub(crate) fn available() -> bool {
        static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *AVAILABLE.get_or_init(|| {
            let leaf0 = std::arch::x86_64::__cpuid(0);
            leaf0.eax >= 7 && std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0
        })
    }
}

/// Makes the calling thread safe for confined runs, once: glibc registers a restartable-sequences
/// area (in thread-local, key-0 memory) that the kernel writes on preemption and signal delivery;
/// while PKRU denies key 0 those writes fail and the kernel kills the process with `SIGSEGV`. The
/// area is unregistered (glibc then reads the CPU number with a system call). Returns whether the
/// thread has no registered area afterwards.
fn rseq_unregistered() -> bool {
    thread_local!(static DONE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) });
    if let Some(done) = DONE.get() {
        return done;
    }
    let done = unregister_rseq();
    DONE.set(Some(done));
    done
}

fn unregister_rseq() -> bool {
    const RSEQ_FLAG_UNREGISTER: libc::c_int = 1;
    const RSEQ_SIG: u32 = 0x5305_3053;
    // SAFETY: `dlsym` looks up glibc's exported `__rseq_offset` (an `isize`) and `__rseq_size` (a
    // `u32`), read only when found; the thread pointer (`fs:0` on x86-64 Linux) plus the offset is
    // this thread's rseq area, which the `rseq` system call only unregisters (it checks that area
    // and length are the ones registered, else fails with EINVAL and changes nothing).
    unsafe {
        let offset = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_offset".as_ptr());
        let size = libc::dlsym(libc::RTLD_DEFAULT, c"__rseq_size".as_ptr());
        if offset.is_null() || size.is_null() || *(size as *const u32) == 0 {
            return true; // no rseq registered by the C library
        }
        let tp: usize;
        std::arch::asm!("mov {}, fs:0", out(reg) tp, options(nostack, readonly, preserves_flags));
        let area = tp.wrapping_add_signed(*(offset as *const isize));
        let registered = *(size as *const u32);
        [32u32, registered].iter().any(|&len| {
            libc::syscall(libc::SYS_rseq, area, len, RSEQ_FLAG_UNREGISTER, RSEQ_SIG) == 0
        })
    }
}

/// A confined run in progress on this thread: where the outermost entry puts its native stack and
/// the PKRU value of the domain (host memory, out of the program's reach).
#[derive(Clone, Copy)]
struct ConfinedRun {
    native_top: u64,
    pkru: u32,
}

thread_local! {
    /// The confinement offered for the next confined run on this thread ([`crate::confine`]):
    /// (start, length) of its area and the PKRU value.
    static OFFERED: std::cell::Cell<Option<(u64, u64, u32)>> = const { std::cell::Cell::new(None) };
    /// The confined run in progress on this thread.
    static CONFINED: std::cell::Cell<Option<ConfinedRun>> = const { std::cell::Cell::new(None) };
    /// Entries into generated code in progress on this thread (outermost = 1).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// Offers `area` (start, length; its end page-aligned, its last page the anchor) and `pkru` to the
/// confined runs started by `f` on this thread.
pub(crate) fn offer<R>(area: (u64, u64), pkru: u32, f: impl FnOnce() -> R) -> R {
    let previous = OFFERED.replace(Some((area.0, area.1, pkru)));
    let result = f();
    OFFERED.set(previous);
    result
}

/// Bytes a confinement area needs at least: the run area (eBPF stack, context, anchor: three pages)
/// and 32 KiB of native stack below it.
pub const MIN_CONFINEMENT: usize = std::mem::size_of::<RunArea>() + 32 * 1024;

/// Refreshes what generated code caches of the memory map: the first region (inline bounds check,
/// separately for loads and stores, and the packet of legacy loads).
///
/// # Safety
/// `ctx` must point to a live context not otherwise borrowed.
unsafe fn refresh(ctx: *mut JitCtx, mem: &MemoryMap) {
    let first = mem.regions().first().copied().unwrap_or(Region {
        start: 0,
        len: 0,
        writable: false,
    });
    let usable = first.len > 0 && first.start.checked_add(first.len).is_some();
    // SAFETY: the caller guarantees `ctx` is valid and unaliased for these writes.
    unsafe {
        (*ctx).pkt_start = first.start;
        (*ctx).pkt_len = first.len;
        (*ctx).r0_start = if usable { first.start } else { u64::MAX };
        (*ctx).r0_len = if usable { first.len } else { 0 };
        let w = usable && first.writable;
        (*ctx).w0_start = if w { first.start } else { u64::MAX };
        (*ctx).w0_len = if w { first.len } else { 0 };
    }
}

/// Frames in use below the one whose top is `fp`.
fn callers(state: &RunState, fp: u64) -> usize {
    (state.stack_top().saturating_sub(fp) / STACK_FRAME_SIZE as u64) as usize
}

/// Whether `frame_top` is the top of a frame of the run's stack with room for the frame.
pub(crate) fn valid_frame(state: &RunState, frame_top: u64) -> bool {
    let top = state.stack_top();
    frame_top <= top
        && frame_top >= top - STACK_SIZE + STACK_FRAME_SIZE as u64
        && (top - frame_top).is_multiple_of(STACK_FRAME_SIZE as u64)
}

/// Runs `prog`'s code at `native` with `args`, in the frame whose `r10` is `frame_top`, on the run
/// whose context is `ctx`; returns `r0`.
///
/// # Safety
/// `ctx` must be the context of the [`RunArea`] whose stack `state` describes (so `state`'s stack top
/// is `ctx`), `frame_top` a valid frame of it ([`valid_frame`]), `native` the address of an instruction
/// of `prog`'s code, and every region of `mem` valid for the run.
pub(crate) unsafe fn enter(
    prog: &JitProgram,
    ctx: *mut JitCtx,
    mem: &mut MemoryMap,
    state: &mut RunState,
    native: u64,
    args: [u64; 5],
    frame_top: u64,
) -> Outcome {
    mem.enter_frame(frame_top, state);
    let anchor = anchor(ctx);
    // SAFETY: per the contract, `ctx` is the live context of this run and `anchor` the page above
    // it, of the same run area; no reference to either is held across the call into generated code
    // (nested entries save and restore what they change).
    let saved = unsafe {
        let saved = (
            (*anchor).prog,
            (*anchor).mem,
            (*anchor).state,
            (*ctx).sfi_arena,
        );
        (*ctx).sfi_arena = prog.sfi_arena();
        (*anchor).prog = prog;
        (*anchor).mem = mem;
        (*anchor).state = state;
        (*ctx).args = args;
        (*ctx).frame_top = frame_top;
        (*ctx).budget = state.budget();
        (*ctx).call_status = 0;
        if prog.is_confined() {
            // From host state only: an outermost entry moves to the confined native stack, nested
            // ones (callbacks, tail calls) stay on it; PKRU is the domain's or, unconfined, the
            // current one.
            let run = CONFINED.get();
            // Outermost entry: the run's native stack top; nested ones continue below the stack
            // pointer the calling code recorded.
            if let (Some(r), 0) = (run, DEPTH.get()) {
                (*anchor).domain_rsp = r.native_top;
            }
            (*anchor).pkru = u64::from(run.map_or_else(|| pkru::read(), |r| r.pkru));
        }
        (*ctx).err_code = 0;
        refresh(ctx, mem);
        saved
    };
    DEPTH.set(DEPTH.get() + 1);
    // SAFETY: the anchor is live for the run (see above); its flag is an atomic, shared by design.
    let polling = PollRegistration::new(unsafe { &(*anchor).poll });
    let _fault_scope = crate::fault::Scope::enter(prog.fault_range());
    // SAFETY: the trampoline at offset 0 of the program's code has this signature; the code stays
    // mapped while `prog` lives (borrowed for the call). Generated code only touches memory it has
    // checked against `mem` (or that the verifier proved), the stack of the run and the context,
    // and returns here, normally or through the unwind path.
    let status = unsafe {
        let trampoline: extern "sysv64" fn(*mut JitCtx, u64) -> u64 = std::mem::transmute::<
            u64,
            extern "sysv64" fn(*mut JitCtx, u64) -> u64,
        >(prog.code_addr());
        trampoline(ctx, native)
    };
    drop(_fault_scope);
    DEPTH.set(DEPTH.get() - 1);
    let interrupted = status != 0 && err_kind(ctx) == ERR_INTERRUPTED;
    if interrupted {
        polling.deliver();
    }
    drop(polling);
    // SAFETY: generated code has returned; `ctx` is again ours alone.
    let (ret, budget, err_code, err_aux, fault_rip, pending) = unsafe {
        let a = &mut *anchor;
        a.prog = saved.0;
        a.mem = saved.1;
        a.state = saved.2;
        (*ctx).sfi_arena = saved.3;
        let c = &*ctx;
        (
            c.ret,
            c.budget,
            c.err_code,
            c.err_aux,
            c.fault_rip,
            a.pending.take(),
        )
    };
    state.set_budget(budget);
    if status == 0 {
        return Ok(ret);
    }
    failure(prog, mem, state, (err_code, err_aux, fault_rip), pending)
}

/// The outcome of a run whose generated code returned a non-zero status, from the error code, its
/// auxiliary value and the faulting address the code left in the context, and the error a call
/// into Rust left pending.
#[cold]
#[inline(never)]
fn failure(
    prog: &JitProgram,
    mem: &MemoryMap,
    state: &mut RunState,
    (err_code, err_aux, fault_rip): (u64, u64, u64),
    pending: Option<RunError>,
) -> Outcome {
    let pc = (err_code & 0xffff_ffff) as usize;
    let kind = match err_code >> 32 {
        ERR_BUDGET => {
            state.set_budget(0);
            let slot = prog
                .block_slots(pc)
                .and_then(|b| b.get(err_aux as usize).copied())
                .unwrap_or(usize::MAX);
            return Err(Box::new(RunError {
                pc: slot,
                kind: RunErrorKind::Budget {
                    budget: prog.budget(),
                },
            }));
        }
        ERR_CALL_DEPTH => RunErrorKind::CallDepth,
        ERR_INTERRUPTED => RunErrorKind::Interrupted,
        ERR_BAD_TARGET => RunErrorKind::BadCallTarget { target: err_aux },
        ERR_LDABS_ZERO => return Ok(0),
        ERR_FAULT => {
            return Err(Box::new(RunError {
                pc: prog.slot_at(fault_rip).unwrap_or(usize::MAX),
                kind: RunErrorKind::MemoryFault {
                    addr: err_aux,
                    at: mem.locate(err_aux),
                    protection_key: err_code & 0xffff_ffff == SEGV_PKUERR,
                },
            }))
        }
        _ => {
            return Err(Box::new(pending.unwrap_or(RunError {
                pc: usize::MAX,
                kind: RunErrorKind::FellOffEnd,
            })))
        }
    };
    Err(Box::new(RunError { pc, kind }))
}

/// Runs `prog`'s instruction at `slot` in the frame whose `r10` is `frame_top`, nested in the JIT
/// run `state` describes (a callback, a tail call); `None` when `state` is no JIT run, `frame_top`
/// no frame of its stack or `slot` no instruction (another engine then runs it, or reports it).
pub(crate) fn enter_nested(
    prog: &JitProgram,
    mem: &mut MemoryMap,
    state: &mut RunState,
    slot: usize,
    args: [u64; 5],
    frame_top: u64,
) -> Option<Result<u64, RunError>> {
    let ctx = jit_ctx(state)?;
    let native = prog.native(slot)?;
    if !valid_frame(state, frame_top) {
        return None;
    }
    // Entering the program's code again (a callback of `bpf_loop` and its kind, a tail call) is a
    // call: a polling point, so that a run spending its time in callbacks without loops of their
    // own still stops when interrupted.
    // SAFETY: `jit_ctx` found the live context of a JIT run; the flag in its anchor is an atomic.
    let requested = unsafe { (*anchor(ctx)).poll.load(Ordering::SeqCst) } != 0;
    if requested && jit_poll(ctx) != 0 {
        POLLER.with(|p| p.requested.store(false, Ordering::SeqCst));
        return Some(Err(RunError {
            pc: slot,
            kind: RunErrorKind::Interrupted,
        }));
    }
    // SAFETY: `jit_ctx` found the context of a JIT run at the stack top of `state`, `frame_top` is a
    // frame of that stack and `native` the code of an instruction of `prog` (from its slot table);
    // `mem`'s regions are valid for the run by `MemoryMap`'s own contract.
    Some(unsafe { enter(prog, ctx, mem, state, native, args, frame_top) }.map_err(|e| *e))
}

/// What a run returns: `r0`, or the error, boxed so that the outcome fits in two registers (a
/// run's way back through its callers then never copies a large error-sized value).
pub(crate) type Outcome = Result<u64, Box<RunError>>;

/// Runs `prog` from its first instruction on a fresh run: `buffers` as regions (the first is the
/// packet of legacy loads) plus the static ones, `r1`-`r5` = `args`.
pub(crate) fn run_fresh(
    prog: &JitProgram,
    buffers: &mut [moat_exec::Buffer<'_>],
    args: [u64; 5],
) -> Outcome {
    if prog.is_confined() {
        return run_fresh_confined(prog, buffers, args);
    }
    // The thread's run state is kept across runs (a nested run, from a helper, finds it in use
    // and makes its own): the run area, and the memory maps of the programs that ran last, with
    // their static regions listed, so that a run only writes its buffers into them.
    RUNS.with(|c| match c.try_borrow_mut() {
        Ok(mut kept) => kept
            .get_or_insert_with(RunCache::new)
            .run(prog, buffers, args),
        Err(_) => RunCache::new().run(prog, buffers, args),
    })
}

/// How many programs' memory maps a thread keeps ready.
const KEPT_MAPS: usize = 4;

/// Regions each kept memory map holds without growing (a run's buffers, the program's static
/// regions, helpers' temporary ones). Runs may start inside the allocator's lock (a probe on `mmap`,
/// which `malloc` calls with its arena locked), so once a thread's run state exists a run neither
/// allocates nor frees: a new program reuses the least recently used map's storage. Only a
/// program with more regions than this grows it, once.
const KEPT_MAP_REGIONS: usize = 32;

/// What a thread keeps across the JIT runs it starts (outside confinement).
struct RunCache {
    area: Box<RunArea>,
    /// The [`JitProgram::run_id`] of the program whose data the stack may hold (0: none).
    owner: u64,
    /// Bytes below the stack top that may be non-zero; the rest of the stack is zero.
    dirty: u32,
    /// Memory maps of the programs that ran last: the program's `run_id` (0: none), the number
    /// of buffer regions at the front, and the map with its static regions after them.
    maps: [(u64, usize, MemoryMap); KEPT_MAPS],
    /// When each map was last used (a count of runs), to reuse the least recent one.
    used: [u64; KEPT_MAPS],
    /// Runs so far, for `used`.
    clock: u64,
}

impl RunCache {
    #[cold]
    #[inline(never)]
    fn new() -> RunCache {
        RunCache {
            area: Box::new(RunArea::new()),
            owner: 0,
            dirty: 0,
            maps: std::array::from_fn(|_| (0, 0, MemoryMap::with_capacity(KEPT_MAP_REGIONS))),
            used: [0; KEPT_MAPS],
            clock: 0,
        }
    }

    /// Runs `prog` on `buffers` with the thread's run area.
    fn run(
        &mut self,
        prog: &JitProgram,
        buffers: &mut [moat_exec::Buffer<'_>],
        args: [u64; 5],
    ) -> Outcome {
        let index = self.map_for(prog, buffers);
        // What a run leaves on the stack is seen again only by later runs of the same program
        // (and its tail calls, which share its domain), so nothing crosses from one program to
        // another: before another program runs, the bytes the stack's last programs may have
        // written (their proven extent, the whole stack where none was proven) are zeroed, and
        // nothing else.
        self.claim_stack(prog);
        let Some((_, _, mem)) = self.maps.get_mut(index) else {
            return Err(Box::new(RunError {
                pc: 0,
                kind: RunErrorKind::FellOffEnd,
            }));
        };
        let result = run_on(prog, mem, &mut self.area, args);
        self.settle(index, prog, buffers.len());
        result
    }

    /// Zeroes what other programs may have left on the stack before a run of `prog`.
    fn claim_stack(&mut self, prog: &JitProgram) {
        if self.owner != prog.run_id() {
            let dirty = (self.dirty as usize).min(self.area.stack.len());
            let from = self.area.stack.len() - dirty;
            if let Some(bytes) = self.area.stack.get_mut(from..) {
                bytes.fill(0);
            }
            self.owner = prog.run_id();
            self.dirty = 0;
        }
        self.dirty = self.dirty.max(prog.stack_extent());
    }

    /// The index in `maps` of the memory map of a run of `prog` on `buffers`: a kept one with
    /// the buffers written in, or the least recently used one refilled (never a new one: see
    /// [`KEPT_MAP_REGIONS`]).
    fn map_for(&mut self, prog: &JitProgram, buffers: &mut [moat_exec::Buffer<'_>]) -> usize {
        self.clock += 1;
        let kept = self
            .maps
            .iter()
            .position(|(id, n, _)| *id == prog.run_id() && *n == buffers.len());
        if let Some(i) = kept {
            if let Some((_, _, mem)) = self.maps.get_mut(i) {
                for (index, b) in buffers.iter_mut().enumerate() {
                    // SAFETY: the buffer is mutably borrowed for this whole call, which outlives
                    // the run; the region it replaces (the same buffer of an earlier run, long
                    // over) is no longer used. The map has `buffers.len()` buffer regions first.
                    unsafe { mem.set_raw(index, buffer_region(b)) };
                }
            }
            if let Some(u) = self.used.get_mut(i) {
                *u = self.clock;
            }
            return i;
        }
        let i = (0..KEPT_MAPS).min_by_key(|&i| self.used[i]).unwrap_or(0);
        let (id, n, mem) = &mut self.maps[i];
        mem.truncate(0);
        for b in buffers.iter_mut() {
            // SAFETY: the buffer is mutably borrowed for this whole call, which outlives the run.
            unsafe { mem.add_raw(buffer_region(b)) };
        }
        for r in prog.static_regions() {
            // SAFETY: static regions live as long as the program (its keep-alive values), which is
            // borrowed for the run; a kept map is used again only for runs of the same program
            // (`run_id`s are never reused).
            unsafe { mem.add_raw(*r) };
        }
        // SAFETY: as for the static regions: the aliases' mappings are kept by the program.
        unsafe { mem.set_atomic_aliases(prog.atomic_aliases()) };
        (*id, *n) = (prog.run_id(), buffers.len());
        self.used[i] = self.clock;
        i
    }

    /// After a run of `prog` with `buffers` buffer regions on the map at `index`: drops what
    /// helpers added during the run, or the whole map if its static regions are no longer those of
    /// the program (a helper removed one).
    fn settle(&mut self, index: usize, prog: &JitProgram, buffers: usize) {
        let statics = prog.static_regions();
        let end = buffers + statics.len();
        let Some((id, _, mem)) = self.maps.get_mut(index) else {
            return;
        };
        // Compared even when the count is right: a helper may have removed a region and added
        // another (a ring buffer reservation), which the next run must not inherit.
        if mem.regions().get(buffers..end) == Some(statics) {
            mem.truncate(end);
        } else {
            // Not kept for the program, but its storage is (no free inside a probe).
            mem.truncate(0);
            *id = 0;
        }
    }
}

/// The region of a run's buffer.
fn buffer_region(b: &mut moat_exec::Buffer<'_>) -> Region {
    Region {
        start: b.bytes.as_mut_ptr() as u64,
        len: b.bytes.len() as u64,
        writable: b.writable,
    }
}

/// [`run_fresh`] for confined code: on the offered area, or on a host-memory one.
fn run_fresh_confined(
    prog: &JitProgram,
    buffers: &mut [moat_exec::Buffer<'_>],
    args: [u64; 5],
) -> Outcome {
    // Room for helpers' temporary regions (`with_region`) too.
    let mut mem = MemoryMap::with_capacity(buffers.len() + prog.static_regions().len() + 4);
    for b in buffers.iter_mut() {
        // SAFETY: the buffer is mutably borrowed for this whole call, which outlives the run.
        unsafe { mem.add_raw(buffer_region(b)) };
    }
    for r in prog.static_regions() {
        // SAFETY: static regions live as long as the program (its keep-alive values), which is
        // borrowed for the run.
        unsafe { mem.add_raw(*r) };
    }
    // SAFETY: as for the static regions: the aliases' mappings are kept by the program.
    unsafe { mem.set_atomic_aliases(prog.atomic_aliases()) };
    // The offer serves the outermost confined run; runs nested in it (from a helper) and runs
    // without an offer get a host-memory area and keep the caller's PKRU.
    let offered = OFFERED.take();
    let result = match offered {
        Some((start, len, pkru)) => run_confined(prog, mem, (start, len), pkru, args),
        None => {
            let mut spare = FALLBACK
                .with(|f| f.borrow_mut().take())
                .unwrap_or_else(|| vec![0u8; FALLBACK_BYTES + STACK_SIZE as usize]);
            let start = spare.as_mut_ptr() as u64;
            let end = (start + spare.len() as u64) & !(STACK_SIZE - 1);
            // SAFETY: confined code exists only where protection keys do.
            let current = unsafe { pkru::read() };
            let result = run_confined(prog, mem, (start, end - start), current, args);
            FALLBACK.with(|f| *f.borrow_mut() = Some(spare));
            result
        }
    };
    OFFERED.set(offered);
    result
}

/// Runs `prog` on a run area placed at the top of the offered `area` (start, length), with the
/// native stack below it and PKRU = `pkru` while generated code runs.
fn run_confined(
    prog: &JitProgram,
    mut mem: MemoryMap,
    area: (u64, u64),
    pkru: u32,
    args: [u64; 5],
) -> Outcome {
    let size = std::mem::size_of::<RunArea>() as u64;
    let end = area.0.saturating_add(area.1);
    let run_area = end.saturating_sub(size);
    // Without key 0 the thread must have no rseq area; where it cannot be unregistered the run
    // keeps key 0 (the host's memory) reachable.
    let pkru = if rseq_unregistered() {
        pkru
    } else {
        pkru & !0b11
    };
    if area.1 < MIN_CONFINEMENT as u64 || !end.is_multiple_of(STACK_SIZE) {
        return Err(Box::new(RunError {
            pc: 0,
            kind: RunErrorKind::OutOfBounds {
                addr: area.0,
                at: mem.locate(area.0),
                len: area.1,
                write: true,
            },
        }));
    }
    // SAFETY: `run_area` is 4096-aligned (the area's end is) and its `size` bytes are the top of
    // the offered area, which `offer`'s caller lent exclusively to the runs of this thread for the
    // duration of the offer (it holds a `&mut` to it); nothing else refers to it during this run.
    // Whatever the area held before is overwritten without being read or dropped.
    let area_ref = unsafe {
        let p = run_area as *mut RunArea;
        std::ptr::addr_of_mut!((*p).stack).write_bytes(0, 1);
        std::ptr::addr_of_mut!((*p).ctx).write(JitCtx::new());
        std::ptr::addr_of_mut!((*p).anchor).write(RunAnchor::new());
        &mut *p
    };
    let outer = CONFINED.replace(Some(ConfinedRun {
        native_top: run_area,
        pkru,
    }));
    let depth = DEPTH.replace(0);
    let result = run_on(prog, &mut mem, area_ref, args);
    DEPTH.set(depth);
    CONFINED.set(outer);
    result
}

/// Runs `prog` from its first instruction on `area`, with the regions of `mem`.
fn run_on(prog: &JitProgram, mem: &mut MemoryMap, area: &mut RunArea, args: [u64; 5]) -> Outcome {
    let ctx: *mut JitCtx = &mut area.ctx;
    let top = ctx as u64;
    // SAFETY: the stack is the STACK_BYTES below `top` inside `area`, which lives until the end of
    // this function; `mem` leaves it before.
    let mut state = unsafe { RunState::new(prog.budget(), top) };
    // SAFETY: the context sits at the stack top, as the JIT's runs require; only JIT code reads it.
    unsafe { state.set_engine_data(top) };
    let entry = prog.native(0).unwrap_or(0);
    // SAFETY: `ctx` is the context of `area`, whose stack `state` describes; `top` is its main frame;
    // `entry` is the program's first instruction; regions are valid as argued above.
    let result = unsafe { enter(prog, ctx, mem, &mut state, entry, args, top) };
    mem.leave_stack();
    result
}

/// Bytes of the host-memory area of confined runs without an offered one.
const FALLBACK_BYTES: usize = 128 * 1024;

thread_local! {
    /// What the thread keeps across runs: its run area and recent programs' memory maps.
    static RUNS: std::cell::RefCell<Option<RunCache>> = const { std::cell::RefCell::new(None) };
    static FALLBACK: std::cell::RefCell<Option<Vec<u8>>> = const { std::cell::RefCell::new(None) };
}

/// The context of a run started by the JIT, if `state` is one.
pub(crate) fn jit_ctx(state: &RunState) -> Option<*mut JitCtx> {
    let data = state.engine_data();
    (data != 0 && data == state.stack_top()).then_some(data as *mut JitCtx)
}

/// Called by generated code for helper calls: `a1`-`a5` are `r1`-`r5`, `ctx` the run context whose
/// `call_*` fields say which helper, from where. Returns `r0`; `call_status` says whether a tail call
/// ran (1) or an error is pending (2).
extern "sysv64" fn jit_call(a1: u64, a2: u64, a3: u64, a4: u64, a5: u64, ctx: *mut JitCtx) -> u64 {
    // SAFETY: generated code passes the live context of its run; the pointers in it were set by
    // `enter` from references that outlive the call into generated code, and nothing else uses them
    // while generated code runs. No reference into the context is held across the helper, which
    // may enter generated code again (callbacks) on the same context.
    unsafe {
        let anchor = anchor(ctx);
        let prog = &*(*anchor).prog;
        let mem = &mut *(*anchor).mem;
        let state = &mut *(*anchor).state;
        let pc = (*ctx).call_pc as usize;
        let fp = (*ctx).call_fp;
        let index = (*ctx).call_index;
        let target = (*ctx).call_target;
        state.set_budget((*ctx).budget);
        let (status, value) = call_helper(
            prog,
            mem,
            state,
            pc,
            fp,
            index,
            target,
            [a1, a2, a3, a4, a5],
        );
        (*ctx).budget = state.budget();
        (*ctx).call_status = status;
        if let Err(e) = value {
            (*anchor).pending = Some(e);
            refresh(ctx, mem);
            return 0;
        }
        refresh(ctx, mem);
        value.unwrap_or(0)
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one helper call, passed once"
)]
fn call_helper(
    prog: &JitProgram,
    mem: &mut MemoryMap,
    state: &mut RunState,
    pc: usize,
    fp: u64,
    index: u32,
    target: u64,
    args: [u64; 5],
) -> (u64, Result<u64, RunError>) {
    let looked_up;
    let helper: &LinkedHelper = if index == u32::MAX {
        let found = u32::try_from(target)
            .ok()
            .and_then(|id| prog.linked().registry().get(id).map(|h| (id, h)));
        let Some((id, h)) = found else {
            return (
                2,
                Err(RunError {
                    pc,
                    kind: RunErrorKind::BadCallTarget { target },
                }),
            );
        };
        looked_up = LinkedHelper {
            id,
            name: h.name.clone(),
            func: h.func.clone(),
            direct: None,
        };
        &looked_up
    } else {
        match prog.helper(index) {
            Some(h) => h,
            None => {
                return (
                    2,
                    Err(RunError {
                        pc,
                        kind: RunErrorKind::BadCallTarget {
                            target: u64::from(index),
                        },
                    }),
                )
            }
        }
    };
    let callers = callers(state, fp);
    mem.enter_frame(fp, state);
    let mut tail: TailCall = None;
    let result = {
        let mut hctx = HelperCtx::new(&mut *mem, prog, fp, callers + 1, &mut *state, &mut tail);
        (helper.func)(&mut hctx, args)
    };
    mem.enter_frame(fp, state);
    let value = match result {
        Ok(v) => v,
        // A callback stopped at a polling point: the run stops here, interrupted.
        Err(HelperError::Callback(inner)) if matches!(inner.kind, RunErrorKind::Interrupted) => {
            return (
                2,
                Err(RunError {
                    pc,
                    kind: RunErrorKind::Interrupted,
                }),
            )
        }
        Err(source) => {
            return (
                2,
                Err(RunError {
                    pc,
                    kind: RunErrorKind::Helper {
                        id: helper.id,
                        name: helper.name.clone(),
                        source,
                    },
                }),
            )
        }
    };
    let Some((next, ctx_arg)) = tail else {
        return (0, Ok(value));
    };
    let result = next.run_tail(mem, ctx_arg, fp, callers, state);
    mem.enter_frame(fp, state);
    match result {
        Ok(v) => (1, Ok(v)),
        Err(e) => (2, Err(e)),
    }
}

/// What a polling point that found its run's flag set asks on this thread: `true` goes on with the
/// run, `false` stops it with `RunErrorKind::Interrupted` (the default without a hook). See
/// [`set_poll_hook`].
pub type PollHook = fn() -> bool;

thread_local! {
    static POLL_HOOK: std::cell::Cell<Option<PollHook>> = const { std::cell::Cell::new(None) };
}

/// Sets the calling thread's poll hook (returns the previous one): a polling point that finds the
/// run's interrupt flag set takes the request and calls it, instead of stopping the run at once.
/// A user-level scheduler's hook switches to other work and returns `true` when the task is
/// resumed, so JIT code is *preempted and resumed* at its back-edges and calls. While the hook
/// runs, the run is detached from the thread: other runs may start, be suspended and end on the
/// thread in any order, and its interrupts do not reach the suspended run.
pub fn set_poll_hook(hook: Option<PollHook>) -> Option<PollHook> {
    POLL_HOOK.replace(hook)
}

/// Called by generated code at a polling point whose flag is set: 0 goes on, 1 stops the run.
extern "sysv64" fn jit_poll(ctx: *mut JitCtx) -> u64 {
    let Some(hook) = POLL_HOOK.get() else {
        return 1;
    };
    // SAFETY: generated code passes the live context of its run; the anchor above it is alive for
    // the run, which is suspended in this call. Only the atomic flag is touched.
    let flag = unsafe { &(*anchor(ctx)).poll };
    let poller = POLLER.with(Arc::clone);
    // Take the request, and detach the run from the thread's state while the hook runs.
    poller.requested.store(false, Ordering::SeqCst);
    flag.store(0, Ordering::SeqCst);
    let current = poller.current.swap(std::ptr::null_mut(), Ordering::SeqCst);
    let depth = DEPTH.replace(0);
    let confined = CONFINED.take();
    let offered = OFFERED.take();
    let scopes = crate::fault::detach();
    let resume = hook();
    crate::fault::attach(scopes);
    OFFERED.set(offered);
    CONFINED.set(confined);
    DEPTH.set(depth);
    poller.current.store(current, Ordering::SeqCst);
    // A request raised while the run was detached is delivered now.
    if poller.requested.load(Ordering::SeqCst) {
        flag.store(1, Ordering::SeqCst);
    }
    u64::from(!resume)
}

/// Called by generated code when a memory access fails its inline check: the complete check of
/// `len` bytes at `addr` (`info` = pc | len << 32 | write << 40 | atomic << 41) against the memory
/// map, with the stack window of the frame whose `r10` is `fp`. Returns the address to access —
/// `addr`, or for an atomic on read-only map values with an in-place alias
/// ([`moat_exec::AtomicAlias`]) the alias address — if allowed; otherwise records the error and
/// returns 0.
extern "sysv64" fn jit_check(ctx: *mut JitCtx, addr: u64, info: u64, fp: u64) -> u64 {
    let pc = (info & 0xffff_ffff) as usize;
    let len = (info >> 32) & 0xff;
    let write = info & (1 << 40) != 0;
    let atomic = info & (1 << 41) != 0;
    // SAFETY: as in `jit_call`: the context and the map and state it points to are live and unused
    // by anything else while this runs.
    unsafe {
        let anchor = anchor(ctx);
        let mem = &mut *(*anchor).mem;
        let state = &*(*anchor).state;
        mem.enter_frame(fp, state);
        let target = if atomic {
            mem.atomic_address(addr, len)
        } else {
            mem.check(addr, len, write).then_some(addr)
        };
        if let Some(target) = target {
            return target;
        }
        let kind = if atomic {
            RunErrorKind::BadAtomic {
                addr,
                at: mem.locate(addr),
                len,
            }
        } else {
            RunErrorKind::OutOfBounds {
                addr,
                at: mem.locate(addr),
                len,
                write,
            }
        };
        (*anchor).pending = Some(RunError { pc, kind });
        0
    }
}

/// Called by generated code at the header of a raised loop ([`crate::raise`]), with `r0`-`r10`
/// stored in the context's `raise_regs`, the loop's index in `call_index`, `r10` in `call_fp` and,
/// where the code counts one, the budget in `budget`. Runs the loop's plan over the run's memory
/// (every range checked whole against the memory map first, as the loop's own accesses would be);
/// returns the native address of the loop's exit with the live-out registers and the budget
/// updated, or 0 when the plan does not apply: the loop's own code then runs.
extern "sysv64" fn jit_raise(
    _a1: u64,
    _a2: u64,
    _a3: u64,
    _a4: u64,
    _a5: u64,
    ctx: *mut JitCtx,
) -> u64 {
    // SAFETY: as in `jit_call`: generated code passes the live context of its run; the program,
    // memory map and state its anchor points to are live and unused by anything else meanwhile.
    unsafe {
        let anchor = anchor(ctx);
        let prog = &*(*anchor).prog;
        let mem = &mut *(*anchor).mem;
        let state = &*(*anchor).state;
        let Some(raised) = prog.raised_loop((*ctx).call_index as usize) else {
            return 0;
        };
        mem.enter_frame((*ctx).call_fp, state);
        let budget = if prog.counts_budget() {
            (*ctx).budget
        } else {
            u64::MAX
        };
        let mut regs = (*ctx).raise_regs;
        let Some(done) = raised.plan.run(&mut regs, &mut RunMemory(mem), budget) else {
            return 0;
        };
        // Exits were checked to be instructions when the program was compiled.
        let Some(native) = prog.native(done.exit) else {
            return 0;
        };
        (*ctx).raise_regs = regs;
        if prog.counts_budget() {
            // A plan runs only if the loop's count fits (`Plan::run`); no panic here regardless.
            (*ctx).budget = budget.saturating_sub(done.insns);
        }
        native
    }
}

/// The run's memory as a raised loop's plan sees it: ranges checked against the memory map (its
/// regions and the current frame's stack window), then used in place.
struct RunMemory<'a>(&'a MemoryMap);

impl moat_raise::Memory for RunMemory<'_> {
    fn read(&self, addr: u64, len: u64) -> Option<&[u8]> {
        let n = usize::try_from(len).ok()?;
        if n == 0 {
            return Some(&[]);
        }
        if !self.0.check(addr, len, false) {
            return None;
        }
        // SAFETY: the memory map says the `len` bytes at `addr` are readable memory of this run
        // (a region or the stack window), which outlives this call into Rust; generated code is
        // suspended meanwhile, so nothing of this run writes them while the slice lives.
        Some(unsafe { std::slice::from_raw_parts(addr as *const u8, n) })
    }

    fn write(&mut self, addr: u64, len: u64) -> Option<&mut [u8]> {
        let n = usize::try_from(len).ok()?;
        if n == 0 {
            return Some(&mut []);
        }
        if !self.0.check(addr, len, true) {
            return None;
        }
        // SAFETY: as in `read`, and the memory map says the bytes are writable; the slice is the
        // only reference to them while it lives (`&mut self`).
        Some(unsafe { std::slice::from_raw_parts_mut(addr as *mut u8, n) })
    }

    fn copy(&mut self, dst: u64, src: u64, len: u64) -> Option<()> {
        let n = usize::try_from(len).ok()?;
        if n == 0 {
            return Some(());
        }
        if !self.0.check(src, len, false) || !self.0.check(dst, len, true) {
            return None;
        }
        // SAFETY: both ranges are memory of this run, readable and writable as checked above;
        // `copy` handles overlap (the plan never asks for one, but memory is not trusted here).
        unsafe { std::ptr::copy(src as *const u8, dst as *mut u8, n) };
        Some(())
    }
}
