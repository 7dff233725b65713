//! Hardware faults in generated code end the run, not the process.
//!
//! A memory access the verifier proved safe runs without a software check. If the verifier was
//! wrong, the hardware is the last line: under `mpk` a protection-key fault (`SEGV_PKUERR`) on memory
//! outside the domain, anywhere a page fault on unmapped or protected memory (`SIGSEGV`) or on a
//! mapped file's missing pages (`SIGBUS`). This module's handler, registered with `moat-signal` for
//! both signals, recognises a fault whose instruction lies in the code of a program this thread is
//! running ([`Scope`]) and resumes that code at its *fault landing*, which records the fault in the
//! run context and unwinds to the entry trampoline like any other run-time error: the run fails with
//! `RunErrorKind::MemoryFault` naming the instruction, and the host goes on. Every other fault is not
//! this handler's: `moat-signal` passes it on to the host's handler or the default action.
//!
//! The handler is registered by the first compilation ([`install`]); every compilation also makes
//! sure moat's dispatcher is still installed (`moat_signal::ensure_installed`: a host may have
//! installed its own handler over it since). Confined code can fault too: `moat-signal`'s dispatcher
//! allows every protection key before it touches memory.

use crate::run::ERR_FAULT;
use moat_signal::{Disposition, Reg, Signal, SignalContext};
use std::cell::Cell;
use std::sync::Once;

/// Entries into generated code a thread can be inside at once (callbacks and tail calls nest).
const MAX_SCOPES: usize = 128;

thread_local! {
    /// (first instruction, end of code, fault landing) of each program this thread is running.
    static SCOPES: [Cell<(u64, u64, u64)>; MAX_SCOPES] =
        const { [const { Cell::new((0, 0, 0)) }; MAX_SCOPES] };
    static DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// While alive, faults in `[start, end)` resume at `landing`.
pub(crate) struct Scope {
    pushed: bool,
}

impl Scope {
    /// Registers the code range and landing of the program about to be entered.
    pub(crate) fn enter(range: (u64, u64, u64)) -> Scope {
        let depth = DEPTH.get();
        let pushed = depth < MAX_SCOPES && range.2 != 0;
        if pushed {
            SCOPES.with(|s| s[depth].set(range));
            DEPTH.set(depth + 1);
        }
        Scope { pushed }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        if self.pushed {
            DEPTH.set(DEPTH.get() - 1);
        }
    }
}

/// Takes this thread's scopes away (a run suspended by its poll hook: other runs may enter and
/// leave code on the thread meanwhile); [`attach`] puts them back.
pub(crate) fn detach() -> Vec<(u64, u64, u64)> {
    let depth = DEPTH.replace(0);
    SCOPES.with(|s| s[..depth].iter().map(Cell::get).collect())
}

/// Puts back the scopes [`detach`] took.
pub(crate) fn attach(scopes: Vec<(u64, u64, u64)>) {
    SCOPES.with(|s| {
        for (slot, range) in s.iter().zip(&scopes) {
            slot.set(*range);
        }
    });
    DEPTH.set(scopes.len().min(MAX_SCOPES));
}

/// The landing for a fault at `rip`, if it is in code this thread is running.
fn landing_for(rip: u64) -> Option<u64> {
    let depth = DEPTH.get();
    SCOPES.with(|s| {
        s[..depth]
            .iter()
            .rev()
            .map(Cell::get)
            .find(|&(start, end, _)| (start..end).contains(&rip))
            .map(|(_, _, landing)| landing)
    })
}

/// Registers the fault handler (once per process) and makes sure `moat-signal`'s dispatcher is
/// installed. Called by every compilation, before the code can run.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for signal in [Signal::Segv, Signal::Bus] {
            // SAFETY: `on_fault` is async-signal-safe (it reads const-initialised thread locals
            // and the context), claims only faults in generated code this thread is running, and
            // resumes that code at its fault landing, which expects the registers it sets. A failed
            // registration leaves faults in generated code to the host's handler, as before any
            // compilation.
            let _ = unsafe { moat_signal::register(signal, on_fault) };
        }
    });
    // A failure leaves the dispatcher as it was; the next compilation tries again.
    let _ = moat_signal::ensure_installed();
}

/// The handler of `SIGSEGV` and `SIGBUS`: a fault in generated code this thread is running resumes
/// at the program's fault landing with r11 = the faulting instruction, r10 = the error code
/// (`ERR_FAULT` and the `si_code` of a `SIGSEGV`, by which the run tells protection-key faults; 0
/// for a `SIGBUS`, whose codes mean something else)
/// and r9 = the faulting address.
fn on_fault(cx: &mut SignalContext<'_>) -> Disposition {
    let rip = cx.reg(Reg::Rip);
    // A signal some process sent (`si_code` <= 0) is no fault, wherever it finds the thread.
    let Some(landing) = landing_for(rip).filter(|_| cx.code() > 0) else {
        return Disposition::NotMine;
    };
    let code = match cx.signal() {
        Signal::Segv => u64::from(cx.code().unsigned_abs()),
        _ => 0,
    };
    cx.set_reg(Reg::R11, rip);
    cx.set_reg(Reg::R10, (ERR_FAULT << 32) | code);
    cx.set_reg(Reg::R9, cx.fault_address());
    cx.set_reg(Reg::Rip, landing);
    Disposition::Handled
}
