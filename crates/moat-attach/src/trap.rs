//! The `int3` side of probes: a `SIGTRAP` handler (registered with `moat-signal`) that sends a
//! thread meeting a probe's `int3` to the probe's trampoline, exactly as the rewritten `jmp` would.
//! Used by probes that cannot be rewritten (the trap fallback) and, while a rewrite is being
//! written, by every probe. Async-signal-safe: a fixed table of atomics, no locks, no allocation.

use moat_signal::{Disposition, Reg, Signal, SignalContext};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// How many probed addresses the table holds.
const SLOTS: usize = 4096;

#[expect(clippy::declare_interior_mutable_const, reason = "array initialiser")]
const ZERO: AtomicU64 = AtomicU64::new(0);
/// Probed address of each slot (0: free).
static ADDRESS: [AtomicU64; SLOTS] = [ZERO; SLOTS];
/// Where a thread that trapped at the slot's address goes.
static DESTINATION: [AtomicU64; SLOTS] = [ZERO; SLOTS];
/// Serialises writers of the table.
static WRITER: Mutex<()> = Mutex::new(());
static INSTALLED: OnceLock<bool> = OnceLock::new();

fn on_trap(ctx: &mut SignalContext<'_>) -> Disposition {
    if ctx.signal() != Signal::Trap {
        return Disposition::NotMine;
    }
    // After `int3`, the instruction pointer is behind it.
    let at = ctx.reg(Reg::Rip).wrapping_sub(1);
    for (addr, dest) in ADDRESS.iter().zip(&DESTINATION) {
        if addr.load(Ordering::Acquire) == at {
            let dest = dest.load(Ordering::Acquire);
            if dest != 0 {
                ctx.set_reg(Reg::Rip, dest);
                return Disposition::Handled;
            }
        }
    }
    Disposition::NotMine
}

/// Sends threads that trap at `address` to `destination` from now on (replacing an earlier
/// destination for the address). `false`: the table is full or the handler cannot be installed.
pub(crate) fn route(address: u64, destination: u64) -> bool {
    let installed = *INSTALLED
        // SAFETY: `on_trap` is async-signal-safe (atomics only) and claims only traps at
        // addresses in its table, where it resumes the thread at that probe's trampoline: code
        // made for exactly the state a thread has there (registers as at the probed address).
        .get_or_init(|| unsafe { moat_signal::register(Signal::Trap, on_trap) }.is_ok());
    if !installed {
        return false;
    }
    let _w = WRITER.lock().unwrap_or_else(|p| p.into_inner());
    let slot = ADDRESS
        .iter()
        .position(|a| a.load(Ordering::Relaxed) == address)
        .or_else(|| ADDRESS.iter().position(|a| a.load(Ordering::Relaxed) == 0));
    let Some(i) = slot else {
        return false;
    };
    DESTINATION[i].store(destination, Ordering::Release);
    ADDRESS[i].store(address, Ordering::Release);
    true
}
