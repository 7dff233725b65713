//! Stopping the process's other threads while code they may be running is rewritten.
//!
//! A rewrite replaces several instructions with one `jmp`; a thread preempted between two of them
//! would resume inside the `jmp`'s bytes. So before such a patch every other thread is sent the
//! runtime's `SIGURG` (through `moat-signal`); its handler moves a thread stopped between
//! displaced instructions to the same point of the trampoline's relocated copy, then waits until
//! the patch is written. A thread that does not answer (the signal blocked) makes the patch fail,
//! and the probe falls back to a single-byte `int3`.

use moat_signal::{Disposition, Reg, Signal, SignalContext};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Interior addresses of the patch in progress and where threads stopped there go.
const MAX_REDIRECTS: usize = 32;
#[expect(clippy::declare_interior_mutable_const, reason = "array initialiser")]
const ZERO: AtomicU64 = AtomicU64::new(0);
static FROM: [AtomicU64; MAX_REDIRECTS] = [ZERO; MAX_REDIRECTS];
static TO: [AtomicU64; MAX_REDIRECTS] = [ZERO; MAX_REDIRECTS];
static STOPPING: AtomicBool = AtomicBool::new(false);
static RELEASED: AtomicBool = AtomicBool::new(true);
static PARKED: AtomicUsize = AtomicUsize::new(0);
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn on_urg(ctx: &mut SignalContext<'_>) -> Disposition {
    if ctx.signal() != Signal::Timer || !STOPPING.load(Ordering::Acquire) {
        return Disposition::NotMine;
    }
    let rip = ctx.reg(Reg::Rip);
    for (from, to) in FROM.iter().zip(&TO) {
        if from.load(Ordering::Acquire) == rip && rip != 0 {
            ctx.set_reg(Reg::Rip, to.load(Ordering::Acquire));
        }
    }
    PARKED.fetch_add(1, Ordering::AcqRel);
    while !RELEASED.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    PARKED.fetch_sub(1, Ordering::AcqRel);
    Disposition::Handled
}

fn threads() -> Vec<i32> {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `patch` while every other thread of the process is parked in the signal handler, threads
/// stopped at a `redirects` source moved to its destination first. `false` (and `patch` not run)
/// when some thread did not park within 200 ms.
pub(crate) fn stopped(redirects: &[(u64, u64)], patch: impl FnOnce()) -> bool {
    let me = i32::try_from(crate::mem::gettid()).unwrap_or(0);
    let others: Vec<i32> = threads().into_iter().filter(|&t| t != me).collect();
    if others.is_empty() {
        patch();
        return true;
    }
    if redirects.len() > MAX_REDIRECTS {
        return false;
    }
    let installed = *INSTALLED
        // SAFETY: `on_urg` is async-signal-safe (atomics and a spin), claims the signal only while
        // a patch is in progress, and moves a thread only from an instruction boundary inside the
        // displaced bytes to the relocated copy of that same instruction in the trampoline,
        // where the thread's registers are exactly what the instruction expects.
        .get_or_init(|| unsafe { moat_signal::register(Signal::Timer, on_urg) }.is_ok());
    if !installed {
        return false;
    }
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    for (i, (from, to)) in FROM.iter().zip(&TO).enumerate() {
        let (f, t) = redirects.get(i).copied().unwrap_or((0, 0));
        to.store(t, Ordering::Release);
        from.store(f, Ordering::Release);
    }
    RELEASED.store(false, Ordering::Release);
    STOPPING.store(true, Ordering::Release);
    let mut signalled = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_millis(200);
    let ok = loop {
        // Threads started meanwhile are signalled too.
        for tid in threads() {
            if tid != me && signalled.insert(tid) && !crate::mem::signal_thread(tid, libc::SIGURG) {
                signalled.remove(&tid);
            }
        }
        let live: usize = threads().iter().filter(|t| signalled.contains(t)).count();
        if PARKED.load(Ordering::Acquire) >= live {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::yield_now();
    };
    if ok {
        patch();
    }
    STOPPING.store(false, Ordering::Release);
    RELEASED.store(true, Ordering::Release);
    while PARKED.load(Ordering::Acquire) > 0 {
        std::hint::spin_loop();
    }
    ok
}
