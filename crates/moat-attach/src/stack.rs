//! The user stacks `bpf_get_stackid` and `bpf_get_stack` see in a probed thread, walked as the
//! kernel's `perf_callchain_user` walks them: the instruction pointer; at a function's entry
//! (its first instruction `push rbp` or `endbr64`, the kernel's `is_uprobe_at_func_entry`) the
//! return address at the stack pointer, since the frame pointer still names the caller's frame;
//! then the frame-pointer chain, `[rbp + 8]` then `rbp = [rbp]`, until a read fails or the stack
//! is deep enough. Code built without frame pointers gives short or wrong stacks, as in the
//! kernel. Return addresses hijacked by return probes are given back as the real ones (the
//! kernel does the same for its uretprobe trampoline).
//!
//! Reads inside the thread's own stack, between its stack pointer and the stack's top, are plain
//! loads; a frame pointer outside it ends the walk (the kernel would read on, and record what it
//! finds). Where the stack's bounds are unknown every read goes through the fault-safe
//! [`crate::read_user`].

use moat::StackSource;
use std::cell::Cell;

/// Where a walk starts: the probed thread's registers at the probe.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Start {
    /// The instruction pointer (the probed address, or where a function returns to).
    pub ip: u64,
    /// The stack pointer.
    pub sp: u64,
    /// The frame pointer.
    pub bp: u64,
    /// Whether the thread stands at a function's first instruction.
    pub entry: bool,
}

thread_local! {
    /// The registers of the probe this thread is running programs for.
    static START: Cell<Option<Start>> = const { Cell::new(None) };
    /// This thread's stack `[lowest, top)` (`(0, 0)`: not asked yet; `(1, 1)`: unknown).
    static BOUNDS: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

/// Runs `f` (a probe's programs) with walks starting at `start`. Inlined, so that `start` goes
/// straight from the probe's registers into the thread-local slot (a copy through memory right
/// after its fields were stored one by one stalls the load on every hit).
#[inline(always)]
pub(crate) fn from<R>(start: Start, f: impl FnOnce() -> R) -> R {
    let old = START.with(|s| s.replace(Some(start)));
    let r = f();
    START.with(|s| s.set(old));
    r
}

fn top_of_stack() -> u64 {
    BOUNDS.with(|b| {
        if b.get() == (0, 0) {
            b.set(crate::mem::thread_stack().unwrap_or((1, 1)));
        }
        b.get().1
    })
}

/// The words `[addr]` and `[addr + 8]`, if readable. Where the thread's stack is known, only
/// inside it: a frame pointer that leaves the stack ends the walk (the frame chain's end, or a
/// function using `rbp` for data), where the kernel would read on wherever it points.
fn read_pair(addr: u64, sp: u64, top: u64) -> Option<[u64; 2]> {
    if addr >= sp && addr.checked_add(16).is_some_and(|end| end <= top) {
        return Some(crate::mem::read_own_stack(addr));
    }
    if top > 1 {
        return None;
    }
    let mut buf = [0u8; 16];
    (crate::read_user(addr, &mut buf) == 16).then(|| {
        let word =
            |i: usize| u64::from_ne_bytes(buf[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
        [word(0), word(1)]
    })
}

fn read_word(addr: u64, sp: u64, top: u64) -> Option<u64> {
    read_pair(addr, sp, top).map(|[w, _]| w).or_else(|| {
        let mut buf = [0u8; 8];
        (crate::read_user(addr, &mut buf) == 8).then(|| u64::from_ne_bytes(buf))
    })
}

/// The user stack of the probe running on this thread, at most `max` frames.
fn walk(start: Start, max: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(max.min(32));
    if max == 0 {
        return out;
    }
    out.push(start.ip);
    let top = top_of_stack();
    if start.entry && out.len() < max {
        if let Some(ret) = read_word(start.sp, start.sp, top) {
            out.push(crate::probe::real_return(start.sp, ret));
        }
    }
    let mut fp = start.bp;
    while out.len() < max {
        let Some([next, ret]) = read_pair(fp, start.sp, top) else {
            break;
        };
        out.push(crate::probe::real_return(fp + 8, ret));
        fp = next;
    }
    out
}

/// The [`StackSource`] of attached programs: the probed thread's stack.
#[derive(Debug, Default)]
pub struct ThreadStacks;

impl StackSource for ThreadStacks {
    fn user_stack(&self, _regs: Option<&[u64; 21]>, max: usize) -> Option<Vec<u64>> {
        START.with(Cell::get).map(|start| walk(start, max))
    }
}
