//! The only `unsafe` of `moat-sched`: the time-stamp counter, sending the preemption signal
//! (`tgkill`), the signal handler that redirects a preempted task into the preemption
//! trampoline, the trampoline itself (assembly), and the switch out of a task from it.
//!
//! # How a signal preempts a task
//!
//! The timer thread sends `SIGURG` (`moat_signal::Signal::Timer`) to the worker whose task overran
//! its quantum. The handler ([`on_timer`], registered with `moat-signal`, async-signal-safe: it reads
//! `const` thread locals and a `OnceLock`, writes one word of the task's stack and the saved
//! registers) does no switching itself. If the worker is running a task that may be preempted
//! (not inside [`crate::no_preempt`], stopped at an instruction of the program's own executable —
//! never inside the C library, whose locks the scheduler may need — with stack room left), it
//! *injects a call*: it writes the interrupted instruction pointer 144 bytes below the interrupted
//! stack pointer (below the 128-byte red zone, which leaf code may be using) and resumes the thread
//! at the trampoline with the stack pointer there. The trampoline saves the flags, every general
//! register and the whole extended state (`xsave`: x87, SSE, AVX, AVX-512, AMX), clears the direction
//! flag, calls [`preempt_yield`] — an ordinary function call, outside the signal handler — which
//! suspends the task's coroutine back to its worker. When the worker resumes the task, the
//! trampoline restores everything and returns with `ret 136`: that pops the interrupted
//! instruction pointer and puts the stack pointer back exactly where it was.

use corosensei::Yielder;
use moat_signal::{Disposition, Reg, Signal, SignalContext};
use std::cell::Cell;
use std::sync::atomic::{compiler_fence, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Bytes of the trampoline's extended-state area (64-byte aligned). Enough for everything up to
/// AMX (AVX-512 takes 2 696 bytes; with AMX's tile data, 11 008 on Sapphire Rapids, which these
/// machines can be); [`signal_support`] refuses CPUs whose state is larger.
const XSAVE_AREA: u64 = 12 * 1024;
/// Bytes below the interrupted stack pointer where the handler puts the return address.
const FRAME: u64 = 144;
/// Stack the preemption path needs below the interrupted stack pointer: the frame, the saved
/// registers, the extended state and the switch out of the coroutine, with margin.
const STACK_NEEDED: u64 = FRAME + 17 * 8 + XSAVE_AREA + 64 + 12 * 1024;

/// Reads the time-stamp counter.
pub(crate) fn rdtsc() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and only reads the counter.
    unsafe { std::arch::x86_64::_rdtsc() }
}

/// The calling thread's id.
pub(crate) fn gettid() -> i32 {
    // SAFETY: `gettid` has no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}

/// Sends the preemption signal to thread `tid` of this process.
pub(crate) fn send_timer_signal(tid: i32) -> bool {
    // SAFETY: `tgkill` only sends a signal; `SIGURG`'s handler is moat-signal's dispatcher (or the
    // default, which ignores it).
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), tid, libc::SIGURG) == 0 }
}

thread_local! {
    /// This thread is a worker of some scheduler (the handler leaves other threads' signals).
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
    /// A task's own code is running on this worker: set and cleared by the task itself, on its
    /// stack, never inside the coroutine switch (which must not be preempted).
    static IN_TASK: Cell<bool> = const { Cell::new(false) };
    /// A preemption was injected and the task has not been switched out yet.
    static PREEMPTING: Cell<bool> = const { Cell::new(false) };
    /// Depth of [`crate::no_preempt`] sections of the running task.
    static NO_PREEMPT: Cell<u32> = const { Cell::new(0) };
    /// The running task's yielder (0: none).
    static YIELDER: Cell<usize> = const { Cell::new(0) };
    /// The lowest address of the running task's stack.
    static STACK_LIMIT: Cell<u64> = const { Cell::new(0) };
    /// The worker's cooperative preemption flag (0: not a worker).
    static FLAG: Cell<usize> = const { Cell::new(0) };
    /// The worker's quantum deadline, which the handler clears when it preempts (0: none).
    static DEADLINE: Cell<usize> = const { Cell::new(0) };
}

/// Makes `flag` the calling worker's cooperative preemption flag and `deadline` its quantum's
/// deadline, for its whole life: the worker's `Arc` keeps both alive while the thread runs.
pub(crate) fn set_flag(flag: &std::sync::atomic::AtomicBool, deadline: &AtomicU64) {
    FLAG.set(flag as *const std::sync::atomic::AtomicBool as usize);
    DEADLINE.set(deadline as *const AtomicU64 as usize);
}

/// Whether the worker's cooperative flag was set (and clears it); false outside a worker.
pub(crate) fn take_flag() -> bool {
    let f = FLAG.get();
    if f == 0 {
        return false;
    }
    // SAFETY: `FLAG` points at the atomic flag of this thread's worker slot, inside the scheduler
    // state the worker thread holds an `Arc` of until it ends (`set_flag`'s contract).
    let flag = unsafe { &*(f as *const std::sync::atomic::AtomicBool) };
    flag.load(Ordering::Relaxed) && flag.swap(false, Ordering::Relaxed)
}

/// Preemptions the handler could not inject (in a critical section, outside the executable's
/// code, out of stack): the timer tries again.
pub(crate) static DEFERRED: AtomicU64 = AtomicU64::new(0);

/// The address ranges of the executable's own code (from `/proc/self/maps`).
static TEXT: OnceLock<Vec<(u64, u64)>> = OnceLock::new();

/// Marks the calling thread as a worker.
pub(crate) fn become_worker() {
    IS_WORKER.set(true);
}

/// The task a worker is about to resume: its yielder (0 before its first run) and stack limit.
pub(crate) fn enter_task(yielder: usize, stack_limit: u64) {
    YIELDER.set(yielder);
    STACK_LIMIT.set(stack_limit);
    NO_PREEMPT.set(0);
    PREEMPTING.set(false);
}

/// The worker is back from a task.
pub(crate) fn leave_task() {
    IN_TASK.set(false);
    PREEMPTING.set(false);
    YIELDER.set(0);
}

/// Runs a task's body in its coroutine (with `yielder`); returns the yielder's address.
pub(crate) fn run_task(
    yielder: &Yielder<(), ()>,
    started: impl FnOnce(usize),
    body: impl FnOnce(),
) {
    let addr = yielder as *const Yielder<(), ()> as usize;
    YIELDER.set(addr);
    started(addr);
    set_in_task(true);
    body();
    set_in_task(false);
}

/// Marks the task's own code as running (or not), ordered against the handler on this thread.
fn set_in_task(running: bool) {
    compiler_fence(Ordering::SeqCst);
    IN_TASK.set(running);
    compiler_fence(Ordering::SeqCst);
}

/// Whether the calling thread is running a task.
pub(crate) fn in_task() -> bool {
    IN_TASK.get()
}

/// Enters a critical section of the running task; returns the previous depth.
pub(crate) fn no_preempt_enter() -> u32 {
    let depth = NO_PREEMPT.get();
    NO_PREEMPT.set(depth + 1);
    depth
}

/// Leaves a critical section entered at `depth`.
pub(crate) fn no_preempt_leave(depth: u32) {
    NO_PREEMPT.set(depth);
}

/// Suspends the running task back to its worker (a cooperative yield). Does nothing outside a
/// task or inside a critical section.
pub(crate) fn yield_task() {
    let y = YIELDER.get();
    if !IN_TASK.get() || y == 0 || NO_PREEMPT.get() > 0 {
        return;
    }
    // SAFETY: `YIELDER` holds the yielder of the coroutine running on this thread (set when it
    // started and again by the worker before every resume, cleared when the worker is back);
    // the yielder lives on that coroutine's stack, which is the stack we are running on.
    let yielder = unsafe { &*(y as *const Yielder<(), ()>) };
    set_in_task(false);
    yielder.suspend(());
    PREEMPTING.set(false);
    set_in_task(true);
}

/// Called by the trampoline, on the task's stack, after the preempted state is saved.
extern "C" fn preempt_yield() {
    yield_task();
}

/// Whether signal preemption can work here: the extended state fits the trampoline's area and the
/// handler is registered (once per process). The error says why not.
pub(crate) fn signal_support() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            let leaf = std::arch::x86_64::__cpuid_count(0xd, 0);
            if u64::from(leaf.ebx) + 64 > XSAVE_AREA {
                return Err(format!(
                    "the CPU's extended state ({} bytes) exceeds the trampoline's area",
                    leaf.ebx
                ));
            }
            TEXT.get_or_init(executable_text);
            // SAFETY: `on_timer` is async-signal-safe (see its comment) and claims only signals
            // that reach a worker thread of a scheduler.
            unsafe { moat_signal::register(Signal::Timer, on_timer) }
                .map_err(|e| format!("cannot register the timer signal's handler: {e}"))
        })
        .clone()
}

/// The executable's code ranges: `r-x` mappings of the file `/proc/self/exe` names.
fn executable_text() -> Vec<(u64, u64)> {
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let range = fields.next()?;
            let perms = fields.next()?;
            let path = fields.nth(3)?;
            if !perms.starts_with("r-x") || std::path::Path::new(path) != exe {
                return None;
            }
            let (start, end) = range.split_once('-')?;
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .collect()
}

/// The timer signal's handler. Async-signal-safe: reads `const` thread locals without destructors
/// and an initialised `OnceLock`, bumps an atomic, writes one word of the running task's stack
/// and the saved registers.
fn on_timer(ctx: &mut SignalContext<'_>) -> Disposition {
    if !IS_WORKER.get() {
        return Disposition::NotMine;
    }
    if !IN_TASK.get() || PREEMPTING.get() {
        return Disposition::Handled;
    }
    let rip = ctx.reg(Reg::Rip);
    let rsp = ctx.reg(Reg::Rsp);
    let in_text = TEXT
        .get()
        .is_some_and(|t| t.iter().any(|&(s, e)| (s..e).contains(&rip)));
    let room = rsp.saturating_sub(STACK_NEEDED) > STACK_LIMIT.get();
    if NO_PREEMPT.get() > 0 || !in_text || !room || !rsp.is_multiple_of(8) {
        DEFERRED.fetch_add(1, Ordering::Relaxed);
        return Disposition::Handled;
    }
    let frame = rsp - FRAME;
    // SAFETY: the thread runs a task (IN_TASK) at an instruction of the executable (not inside
    // the trampoline, which PREEMPTING excludes), so `rsp` is on the task's stack; `frame` lies
    // below its red zone and above the stack's limit with STACK_NEEDED to spare, memory nothing
    // else uses (the kernel put the signal frame further down). 8-aligned.
    unsafe { (frame as *mut u64).write(rip) };
    ctx.set_reg(Reg::Rsp, frame);
    ctx.set_reg(Reg::Rip, moat_sched_preempt_trampoline as *const () as u64);
    PREEMPTING.set(true);
    // No second signal for this quantum: the task is on its way out.
    let deadline = DEADLINE.get();
    if deadline != 0 {
        // SAFETY: `DEADLINE` points at the deadline of this worker's slot, alive while the worker
        // runs (`set_flag`'s contract); an atomic store is async-signal-safe.
        unsafe { (*(deadline as *const AtomicU64)).store(0, Ordering::Relaxed) };
    }
    Disposition::Handled
}

extern "C" {
    /// The preemption trampoline (below); entered with `[rsp]` = the interrupted instruction
    /// pointer and `rsp` = the interrupted stack pointer − 144.
    fn moat_sched_preempt_trampoline();
}

// The trampoline: save flags, general registers and the extended state, call `preempt_yield`,
// restore, and return to the interrupted instruction with its stack pointer (`ret 136`). The
// `xsave` header is zeroed first: `xsave` writes only the bits of XSTATE_BV it saves and none of
// the reserved bytes after them, and `xrstor` faults on a stray bit in any of them.
std::arch::global_asm!(
    ".globl moat_sched_preempt_trampoline",
    "moat_sched_preempt_trampoline:",
    "pushfq",
    "push rax",
    "push rbx",
    "push rcx",
    "push rdx",
    "push rsi",
    "push rdi",
    "push rbp",
    "push r8",
    "push r9",
    "push r10",
    "push r11",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "cld",
    "mov rbx, rsp",
    "sub rsp, {area}",
    "and rsp, -64",
    "xor eax, eax",
    "mov [rsp + 512], rax",
    "mov [rsp + 520], rax",
    "mov [rsp + 528], rax",
    "mov [rsp + 536], rax",
    "mov [rsp + 544], rax",
    "mov [rsp + 552], rax",
    "mov [rsp + 560], rax",
    "mov [rsp + 568], rax",
    "mov eax, -1",
    "mov edx, -1",
    "xsave64 [rsp]",
    "call {yield_fn}",
    "mov eax, -1",
    "mov edx, -1",
    "xrstor64 [rsp]",
    "mov rsp, rbx",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop r11",
    "pop r10",
    "pop r9",
    "pop r8",
    "pop rbp",
    "pop rdi",
    "pop rsi",
    "pop rdx",
    "pop rcx",
    "pop rbx",
    "pop rax",
    "popfq",
    "ret 136",
    area = const XSAVE_AREA,
    yield_fn = sym preempt_yield,
);
