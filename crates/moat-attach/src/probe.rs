//! Probes: what runs when a thread reaches a probed address (the entry handler, called by the
//! probe's trampoline) or returns from a probed function (the return handler, called by the return
//! trampoline), and the per-thread shadow stack of hijacked return addresses.
//!
//! Both handlers fail open: a program that fails, faults under `sfi`, panics or is disabled leaves
//! the thread's registers and memory as they were, and the thread goes on as if unprobed.

use crate::codegen::{FRAME, PT_REGS_SIZE};
use moat::LoadedProgram;
use std::cell::{Cell, RefCell};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// The kernel's `struct pt_regs` on x86-64: `r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di
/// orig_ax ip cs flags sp ss`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PtRegs {
    /// The registers, in the kernel's order.
    pub regs: [u64; 21],
}

/// `pt_regs` slots.
pub mod slot {
    #![allow(missing_docs)]
    pub const RBP: usize = 4;
    pub const ORIG_RAX: usize = 15;
    pub const RAX: usize = 10;
    pub const RIP: usize = 16;
    pub const CS: usize = 17;
    pub const RSP: usize = 19;
    pub const SS: usize = 20;
}

/// One program attached to a probe.
#[derive(Debug, Clone)]
pub struct Hook {
    /// The program.
    pub program: LoadedProgram,
    /// What `bpf_get_attach_cookie` returns to it.
    pub cookie: u64,
}

/// A probed address and what runs there. Never freed: a thread may be in its trampoline or hold
/// a hijacked return after detach.
#[derive(Debug)]
pub(crate) struct Probe {
    /// The probed address.
    pub address: u64,
    /// The function's first byte (`bpf_get_func_ip`).
    pub function: u64,
    /// Whether the probed instruction is a function's first (`push rbp` or `endbr64`): stack
    /// walks then read the return address at the stack pointer first.
    pub entry_frame: bool,
    /// Programs run at entry.
    pub entry: Vec<Hook>,
    /// Programs run at return.
    pub ret: Vec<Hook>,
    /// Whether programs run (cleared at detach).
    pub enabled: AtomicBool,
    /// Program runs.
    pub hits: HitCounter,
    /// Runs that failed (refused or faulting programs, disabled programs).
    pub errors: AtomicU64,
    /// Hits whose return programs were skipped: too deep for the shadow stack.
    pub missed: AtomicU64,
}

/// Cells of a [`HitCounter`]: one per thread for the first `STRIPES - 1` threads that count, the
/// last one shared by the others.
const STRIPES: usize = 64;

/// A count of program runs that a thread adds to without a `lock`-prefixed instruction (which
/// waits for the stores of the trampoline's register frame to drain, on every hit): each of the
/// first `STRIPES - 1` threads to count owns a cell and adds with a load and a store; other
/// threads, and every thread of an injected agent (whose thread-local storage probes must not
/// touch, [`tls_free_guard`]), share the last cell and add atomically. Exact: a cell with one
/// writer never loses an add, and a thread counts only while it holds the probe guard, so a hit
/// nested in its own count (a signal) never reaches the counter.
#[derive(Debug)]
pub(crate) struct HitCounter {
    cells: [AtomicU64; STRIPES],
}

/// `STRIPE`: not yet assigned.
const NO_STRIPE: u8 = u8::MAX;

/// The stripes threads own so far.
static STRIPES_TAKEN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    /// This thread's cell of every [`HitCounter`] (`STRIPES - 1`: the shared one).
    static STRIPE: Cell<u8> = const { Cell::new(NO_STRIPE) };
}

impl HitCounter {
    pub(crate) fn new() -> HitCounter {
        HitCounter {
            cells: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Counts one run; only while the thread holds the probe guard.
    #[inline]
    pub(crate) fn add(&self) {
        let stripe = if guard::TABLE_GUARD.load(Ordering::Relaxed) {
            STRIPES - 1
        } else {
            STRIPE.with(|s| {
                if s.get() == NO_STRIPE {
                    let taken = STRIPES_TAKEN.fetch_add(1, Ordering::Relaxed);
                    s.set(taken.min(STRIPES - 1) as u8);
                }
                usize::from(s.get())
            })
        };
        let Some(cell) = self.cells.get(stripe) else {
            return;
        };
        if stripe == STRIPES - 1 {
            cell.fetch_add(1, Ordering::Relaxed);
        } else {
            // The thread's own cell: no other thread writes it.
            cell.store(cell.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        }
    }

    /// The runs counted so far.
    pub(crate) fn get(&self) -> u64 {
        self.cells.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

/// How deep the shadow stack of hijacked returns goes per thread (the kernel's
/// `MAX_URETPROBE_DEPTH`); deeper calls run their entry programs but not their return ones.
const SHADOW_DEPTH: usize = 64;

#[derive(Clone, Copy)]
struct Frame {
    /// Where the return address was (the stack slot at function entry).
    slot: u64,
    /// The real return address.
    ret: u64,
    probe: *const Probe,
}

struct Shadow {
    frames: [Frame; SHADOW_DEPTH],
    depth: usize,
}

const FREE: u8 = 0;
const RUNNING: u8 = 1;
const QUIET: u8 = 2;

const EMPTY: Frame = Frame {
    slot: 0,
    ret: 0,
    probe: std::ptr::null(),
};

thread_local! {
    static SHADOW: RefCell<Shadow> = const {
        RefCell::new(Shadow { frames: [EMPTY; SHADOW_DEPTH], depth: 0 })
    };
    /// The function address and attach cookie of the program running on this thread.
    static CURRENT: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Runs `f` with this thread's probes off: what moat does for itself (an agent's reports, map
/// dumps) is not traced.
pub fn untraced<R>(f: impl FnOnce() -> R) -> R {
    match guard::enter(QUIET) {
        Some(slot) => {
            let r = f();
            guard::leave(slot);
            r
        }
        // Already running a probe or untraced.
        None => f(),
    }
}

/// Makes the probes' re-entrancy guard live outside thread-local storage from now on: for a
/// library loaded with `dlopen` (an injected agent), whose thread-local storage each thread
/// allocates with `malloc` on first touch — a `malloc` that may be probed. Costs ~15 ns per hit
/// (an atomic compare-and-swap on a shared table instead of a thread-local byte).
pub fn tls_free_guard() {
    guard::TABLE_GUARD.store(true, Ordering::Relaxed);
}

/// Whether each thread runs probe programs (`RUNNING`) or moat's own work (`QUIET`), or neither
/// (`FREE`): probes hit in the first two states are skipped. In thread-local storage, or (after
/// [`tls_free_guard`]) in a table of words `thread pointer | state`, the thread pointer (`fs:0`,
/// 64-byte aligned) naming the thread.
mod guard {
    use super::FREE;
    use std::cell::Cell;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Whether the table is used rather than thread-local storage ([`super::tls_free_guard`]).
    pub(super) static TABLE_GUARD: AtomicBool = AtomicBool::new(false);

    thread_local! {
        static STATE: Cell<u8> = const { Cell::new(FREE) };
    }

    /// Where a thread's state is.
    pub(super) enum Slot {
        /// In thread-local storage.
        Local,
        /// In the table, at this index.
        Table(usize),
    }

    /// Moves this thread from `FREE` to `to`; where its state is, or `None` if it is not free.
    pub(super) fn enter(to: u8) -> Option<Slot> {
        if !TABLE_GUARD.load(Ordering::Relaxed) {
            return STATE
                .with(|s| (s.get() == FREE).then(|| s.set(to)))
                .map(|()| Slot::Local);
        }
        enter_table(to).map(Slot::Table)
    }

    /// Back to `FREE`.
    pub(super) fn leave(slot: Slot) {
        match slot {
            Slot::Local => STATE.with(|s| s.set(FREE)),
            Slot::Table(i) => leave_table(i),
        }
    }

    const SLOTS: usize = 4096;
    #[expect(clippy::declare_interior_mutable_const, reason = "array initialiser")]
    const ZERO: AtomicU64 = AtomicU64::new(0);
    static TABLE: [AtomicU64; SLOTS] = [ZERO; SLOTS];

    /// Moves this thread from `FREE` to `to` in the table; its slot, or `None` if it is not free.
    fn enter_table(to: u8) -> Option<usize> {
        let me = crate::mem::thread_pointer() & !0x3f;
        let start = ((me >> 6).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 52) as usize;
        let want = me | u64::from(to);
        for i in 0..SLOTS {
            let idx = (start + i) % SLOTS;
            let v = TABLE[idx].load(Ordering::Acquire);
            if v & !0x3f == me {
                return (v & 0x3 == u64::from(FREE)
                    && TABLE[idx]
                        .compare_exchange(v, want, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok())
                .then_some(idx);
            }
            if v == 0 {
                if TABLE[idx]
                    .compare_exchange(0, want, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Some(idx);
                }
                // Another thread took the slot: look at it again.
                return enter_evicting(me, want);
            }
        }
        enter_evicting(me, want)
    }

    /// The table is full (or contended): this thread's entry, or a free one of another thread
    /// replaced.
    fn enter_evicting(me: u64, want: u64) -> Option<usize> {
        for (idx, slot) in TABLE.iter().enumerate() {
            let v = slot.load(Ordering::Acquire);
            if v & !0x3f == me && v & 0x3 != u64::from(FREE) {
                return None;
            }
            if (v == 0 || v & 0x3 == u64::from(FREE))
                && slot
                    .compare_exchange(v, want, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                return Some(idx);
            }
        }
        None
    }

    fn leave_table(slot: usize) {
        let me = crate::mem::thread_pointer() & !0x3f;
        TABLE[slot].store(me | u64::from(FREE), Ordering::Release);
    }
}

/// The function address and cookie of the probe program running on this thread.
pub(crate) fn current() -> (u64, u64) {
    CURRENT.with(Cell::get)
}

/// The return trampoline's address, made on first use.
static RETURN_TRAMPOLINE: OnceLock<Option<u64>> = OnceLock::new();

pub(crate) fn return_trampoline(near: u64) -> Option<u64> {
    *RETURN_TRAMPOLINE.get_or_init(|| {
        crate::mem::place_code(near, crate::codegen::MAX_TRAMPOLINE, |at| {
            crate::codegen::return_trampoline(at, on_return as *const () as u64).ok()
        })
    })
}

/// Runs `hook` on a context of `words` (168 bytes, the size of every tracing context moat gives:
/// `pt_regs`, or a tracepoint record padded with zeros).
fn run(hook: &Hook, words: &[u64; 21], function: u64) -> bool {
    CURRENT.with(|c| c.set((function, hook.cookie)));
    // A copy: what a program writes into its context never reaches the thread's registers.
    let mut ctx = [0u8; PT_REGS_SIZE];
    for (dst, r) in ctx.chunks_exact_mut(8).zip(words) {
        dst.copy_from_slice(&r.to_ne_bytes());
    }
    hook.program.run_in_place(&mut ctx).is_ok()
}

fn run_hooks(
    hooks: &[Hook],
    words: &[u64; 21],
    function: u64,
    hits: &HitCounter,
    errors: &AtomicU64,
) {
    for hook in hooks {
        hits.add();
        if !run(hook, words, function) {
            errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn run_all(probe: &Probe, hooks: &[Hook], regs: &PtRegs) {
    run_hooks(
        hooks,
        &regs.regs,
        probe.function,
        &probe.hits,
        &probe.errors,
    );
}

/// The programs of one rewritten system call site.
#[derive(Debug)]
pub(crate) struct SyscallProbe {
    /// Where the rewritten sequence starts (the `mov eax, NR`).
    pub site: u64,
    /// The `syscall` instruction's address.
    pub address: u64,
    /// The system call's number.
    pub nr: u32,
    /// `tracepoint/syscalls/sys_enter_*` programs (context: the kernel's `sys_enter` record).
    pub enter: Vec<Hook>,
    /// `tracepoint/syscalls/sys_exit_*` programs (the `sys_exit` record).
    pub exit: Vec<Hook>,
    /// `raw_tracepoint/sys_enter` programs (`bpf_raw_tracepoint_args`: `pt_regs *`, number).
    pub raw_enter: Vec<Hook>,
    /// `raw_tracepoint/sys_exit` programs (`pt_regs *`, return value).
    pub raw_exit: Vec<Hook>,
    /// Whether programs run (cleared at detach).
    pub enabled: AtomicBool,
    /// Program runs.
    pub hits: HitCounter,
    /// Failed runs.
    pub errors: AtomicU64,
}

fn sys_event(probe: &SyscallProbe, regs: &PtRegs, exit: bool) {
    let r = &regs.regs;
    let tid = crate::helpers::pid_tgid();
    // struct trace_entry { u16 type; u8 flags; u8 preempt_count; s32 pid; }: the pid only.
    let common = (tid & 0xffff_ffff) << 32;
    let mut words = [0u64; 21];
    words[0] = common;
    words[1] = u64::from(probe.nr);
    let (hooks, raw) = if exit {
        words[2] = r[slot::RAX];
        (&probe.exit, &probe.raw_exit)
    } else {
        // sys_enter's args[6]: rdi, rsi, rdx, r10, r8, r9.
        for (i, s) in [14usize, 13, 12, 7, 9, 8].into_iter().enumerate() {
            words[2 + i] = r[s];
        }
        (&probe.enter, &probe.raw_enter)
    };
    run_hooks(hooks, &words, probe.address, &probe.hits, &probe.errors);
    if !raw.is_empty() {
        // struct bpf_raw_tracepoint_args { u64 args[2]; }: the registers (readable with
        // bpf_probe_read_user) and the number, or the return value.
        let mut raw_words = [0u64; 21];
        raw_words[0] = regs as *const PtRegs as u64;
        raw_words[1] = if exit {
            r[slot::RAX]
        } else {
            u64::from(probe.nr)
        };
        run_hooks(raw, &raw_words, probe.address, &probe.hits, &probe.errors);
    }
}

/// Called by a system call site's trampoline just before the `syscall` instruction.
///
/// # Safety
/// `probe` is a live `SyscallProbe`; `regs` points to the trampoline's frame.
pub(crate) unsafe extern "C" fn on_sys_enter(probe: *const SyscallProbe, regs: *mut PtRegs) {
    // SAFETY: the trampoline passes its own probe, never freed, and its frame.
    let (probe, regs) = unsafe { (&*probe, &mut *regs) };
    on_sys(probe, regs, false);
}

/// Called by a system call site's trampoline just after the `syscall` instruction.
///
/// # Safety
/// As [`on_sys_enter`].
pub(crate) unsafe extern "C" fn on_sys_exit(probe: *const SyscallProbe, regs: *mut PtRegs) {
    // SAFETY: as in `on_sys_enter`.
    let (probe, regs) = unsafe { (&*probe, &mut *regs) };
    on_sys(probe, regs, true);
}

fn on_sys(probe: &SyscallProbe, regs: &mut PtRegs, exit: bool) {
    let rsp = regs as *mut PtRegs as u64 + FRAME as u64 + 128;
    fill_fixed(regs, probe.address, rsp);
    regs.regs[slot::ORIG_RAX] = u64::from(probe.nr);
    if !probe.enabled.load(Ordering::Relaxed) {
        return;
    }
    let Some(slot) = guard::enter(RUNNING) else {
        return;
    };
    let start = crate::stack::Start {
        ip: probe.address,
        sp: rsp,
        bp: regs.regs[slot::RBP],
        entry: false,
    };
    let _ = catch_unwind(AssertUnwindSafe(|| {
        crate::stack::from(start, || sys_event(probe, regs, exit))
    }));
    guard::leave(slot);
}

/// Runs `f` unless this thread is already in a probe.
fn guarded(f: impl FnOnce()) {
    // Hits from moat's own code (a program's helpers, the agent) are not the process's.
    let Some(slot) = guard::enter(RUNNING) else {
        return;
    };
    // A panic in moat must not unwind into the traced code (or abort the process).
    let _ = catch_unwind(AssertUnwindSafe(f));
    guard::leave(slot);
}

fn fill_fixed(regs: &mut PtRegs, rip: u64, rsp: u64) {
    regs.regs[slot::ORIG_RAX] = u64::MAX;
    regs.regs[slot::RIP] = rip;
    regs.regs[slot::CS] = 0x33;
    regs.regs[slot::RSP] = rsp;
    regs.regs[slot::SS] = 0x2b;
}

/// Called by a probe's trampoline with the thread's registers.
///
/// # Safety
/// `probe` is a live `Probe`; `regs` points to the trampoline's frame (`FRAME` bytes below the red
/// zone of the probed thread's stack), with the probed function's return address at `pt_regs.sp`
/// where the probe has return programs.
pub(crate) unsafe extern "C" fn on_entry(probe: *const Probe, regs: *mut PtRegs) {
    // SAFETY: the trampoline passes its own probe, which is never freed, and its frame.
    let (probe, regs) = unsafe { (&*probe, &mut *regs) };
    let rsp = regs as *mut PtRegs as u64 + FRAME as u64 + 128;
    fill_fixed(regs, probe.address, rsp);
    if !probe.enabled.load(Ordering::Relaxed) {
        return;
    }
    let start = crate::stack::Start {
        ip: probe.address,
        sp: rsp,
        bp: regs.regs[slot::RBP],
        entry: probe.entry_frame,
    };
    guarded(|| {
        crate::stack::from(start, || run_all(probe, &probe.entry, regs));
        if !probe.ret.is_empty() {
            hijack(probe, rsp);
        }
    });
}

/// Replaces the return address at `slot` with the return trampoline, remembering the real one.
fn hijack(probe: &Probe, slot: u64) {
    let Some(trampoline) = return_trampoline(probe.address) else {
        probe.missed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    SHADOW.with(|s| {
        let mut s = s.borrow_mut();
        let depth = s.depth;
        let Some(frame) = s.frames.get_mut(depth) else {
            probe.missed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let slot_ptr = slot as *mut u64;
        // SAFETY: `slot` is the probed thread's stack pointer at the entry of the probed
        // function (uretprobes attach at offset 0 only), where `call` put the return address;
        // this thread owns that stack and nothing else runs on it now.
        let ret = unsafe { slot_ptr.read() };
        *frame = Frame { slot, ret, probe };
        s.depth = depth + 1;
        // SAFETY: as above.
        unsafe { slot_ptr.write(trampoline) };
    });
}

/// What a stack walk reports for return address `value` found at stack slot `slot`: the real
/// return address where a return probe put its trampoline there.
pub(crate) fn real_return(slot: u64, value: u64) -> u64 {
    if RETURN_TRAMPOLINE.get().copied().flatten() != Some(value) {
        return value;
    }
    SHADOW.with(|s| {
        let s = s.borrow();
        s.frames[..s.depth]
            .iter()
            .rev()
            .find(|f| f.slot == slot)
            .map_or(value, |f| f.ret)
    })
}

/// Called by the return trampoline: pops the thread's shadow stack, runs the function's return
/// programs and returns the real return address.
///
/// Frames whose stack slot lies below the returning one were left by `longjmp` (or a C++ exception
/// unwinding through a frame that was not hijacked) and are dropped, as the kernel drops its return
/// instances.
///
/// # Safety
/// `regs` points to the return trampoline's frame.
pub(crate) unsafe extern "C" fn on_return(_: u64, regs: *mut PtRegs) -> u64 {
    // SAFETY: the trampoline passes its frame.
    let regs = unsafe { &mut *regs };
    let rsp = regs as *mut PtRegs as u64 + FRAME as u64 + 8;
    let slot = rsp - 8;
    let frame = SHADOW.with(|s| {
        let mut s = s.borrow_mut();
        while s.depth > 0 {
            s.depth -= 1;
            let f = s.frames[s.depth];
            if f.slot >= slot {
                return Some(f);
            }
        }
        None
    });
    let Some(frame) = frame else {
        // No frame: the shadow stack is corrupt; nothing sane to return to.
        std::process::abort();
    };
    fill_fixed(regs, frame.ret, rsp);
    // SAFETY: probes are never freed.
    let probe = unsafe { &*frame.probe };
    if probe.enabled.load(Ordering::Relaxed) {
        let start = crate::stack::Start {
            ip: frame.ret,
            sp: rsp,
            bp: regs.regs[slot::RBP],
            entry: false,
        };
        guarded(|| crate::stack::from(start, || run_all(probe, &probe.ret, regs)));
    }
    frame.ret
}

#[cfg(test)]
mod tests {
    use super::{HitCounter, STRIPES};

    /// More threads than the counter has cells: those with a cell of their own and those sharing
    /// the last one together count every add.
    #[test]
    fn hit_counts_are_exact_across_many_threads() {
        let counter = HitCounter::new();
        let threads = STRIPES + 16;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..2_000 {
                        counter.add();
                    }
                });
            }
        });
        assert_eq!(counter.get(), threads as u64 * 2_000);
    }
}
