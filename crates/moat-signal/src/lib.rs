//! moat's signal module: the one owner of the process's handlers for the signals the runtime uses.
//!
//! Runtime components do not install signal handlers. They [`register`] a [`Handler`] for a
//! [`Signal`] (hardware faults, `SIGTRAP`, the preemption timer); moat installs one *dispatcher* per
//! signal, once, which offers each signal to that signal's registered handlers in registration
//! order. A handler sees a [`SignalContext`] (signal, `si_code`, fault address, the interrupted
//! thread's general registers, writable) and answers [`Disposition::Handled`] (resume the thread with
//! the registers as the handler left them) or [`Disposition::NotMine`].
//!
//! # Chaining: the contract with the host
//!
//! - **Before.** The handler the host had installed when moat installed its dispatcher is kept. A
//!   signal no registered handler claims goes to it, with the same `siginfo` and `ucontext`: a
//!   three-argument call if it was installed with `SA_SIGINFO`, a one-argument one otherwise, with its
//!   `sa_mask` blocked. `SIG_IGN` ignores the signal, except a fault or trap raised by the CPU, which
//!   the kernel would have delivered anyway: that one, like `SIG_DFL`, gets the default action (the
//!   default disposition is restored and the signal raised again, or — for a fault — the faulting
//!   instruction runs again, so the process dies or dumps core exactly as it would have without moat;
//!   the timer signal's default is to ignore it). `SA_RESETHAND` and `SA_NODEFER` of the previous
//!   handler are not emulated.
//! - **After.** A host that installs its own handler over moat's later (a crash reporter, say) takes
//!   the signal away from moat's handlers. [`ensure_installed`] notices that (one `sigaction` query
//!   per signal) and installs the dispatcher again; the replacing handler then gets, in turn, what no
//!   registered handler claims. If it calls the handler it replaced — moat's dispatcher — for a signal
//!   it does not want, that call goes on to the handler that was there before it, never round in a
//!   circle. The JIT calls [`ensure_installed`] at every compilation, so a replaced handler is back
//!   before new code runs; a host that replaces handlers while code runs must chain to the one it
//!   replaced.
//!
//! The dispatcher's first instructions, where the CPU has protection keys, set PKRU to allow every
//! key, before any memory is touched: a signal can interrupt *confined* code, whose PKRU denies the
//! host's memory, and the kernel then writes the signal frame onto that code's own stack. For the same
//! reason it does not run on an alternate signal stack (`SA_ONSTACK`): host memory, which the
//! interrupted PKRU may deny the kernel. The price: a stack overflow in host code cannot be reported
//! by a handler (Rust's "has overflowed its stack" message); the process still dies of the `SIGSEGV`.
//!
//! All `unsafe` of the crate is in `sys`.

#![deny(missing_docs)]
#![deny(unsafe_code)]
#![cfg(all(target_arch = "x86_64", target_os = "linux"))]

mod context;
#[expect(
    unsafe_code,
    reason = "signal handlers: sigaction, the dispatcher, the kernel's siginfo and ucontext"
)]
mod sys;

pub use context::{Reg, SignalContext};
pub use sys::{ensure_installed, register};

use std::sync::OnceLock;
use thiserror::Error;

/// A signal the runtime handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `SIGSEGV`: a page fault on unmapped or protected memory, a protection-key fault, a general
    /// protection fault.
    Segv,
    /// `SIGBUS`: an access the memory behind a mapping cannot serve (beyond the end of a mapped file,
    /// a hardware memory error).
    Bus,
    /// `SIGTRAP`: an `int3` (software breakpoints, probes), a debug exception.
    Trap,
    /// The preemption timer's signal, `SIGURG`: ignored by default, so a stray one harms nothing, and
    /// rarely used otherwise (Go's runtime preempts with it for the same reasons).
    Timer,
}

impl Signal {
    /// Every signal the runtime handles.
    pub const ALL: [Signal; 4] = [Signal::Segv, Signal::Bus, Signal::Trap, Signal::Timer];

    /// The signal's number.
    pub fn number(self) -> libc::c_int {
        match self {
            Signal::Segv => libc::SIGSEGV,
            Signal::Bus => libc::SIGBUS,
            Signal::Trap => libc::SIGTRAP,
            Signal::Timer => libc::SIGURG,
        }
    }

    /// The signal with number `number`, if the runtime handles it.
    pub fn from_number(number: libc::c_int) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.number() == number)
    }

    /// Index into per-signal tables.
    fn index(self) -> usize {
        self as usize
    }

    /// Whether the default action (`SIG_DFL`) ignores the signal.
    fn ignored_by_default(self) -> bool {
        self == Signal::Timer
    }

    /// Whether a signal with `code` (its `si_code`) was raised by the CPU executing an instruction:
    /// the kernel delivers such a signal even where it is ignored or blocked (with the default action).
    fn forced(self, code: libc::c_int) -> bool {
        matches!(self, Signal::Segv | Signal::Bus | Signal::Trap) && code > 0
    }

    /// Whether returning from the handler runs the instruction that raised the signal again (a fault,
    /// not a trap: after `int3` the thread resumes behind it).
    fn recurs(self, code: libc::c_int) -> bool {
        matches!(self, Signal::Segv | Signal::Bus) && code > 0
    }
}

/// What a handler did with a signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The signal was this handler's: the thread resumes with the registers of the context.
    Handled,
    /// Not this handler's: the next registered handler, or the host's, gets it.
    NotMine,
}

/// A registered signal handler.
///
/// It runs inside the signal handler, on the interrupted thread, so it must be async-signal-safe:
/// no allocation, no locks, no panic, nothing but reading and writing memory it knows to be
/// consistent at any instruction (atomics, `const`-initialised thread locals without destructors)
/// and async-signal-safe system calls. See [`register`] for the full contract.
pub type Handler = fn(&mut SignalContext<'_>) -> Disposition;

/// Handlers per signal.
pub const SLOTS: usize = 4;

/// The registered handlers of each signal, by [`Signal::index`]; set once, read by the dispatcher
/// without locks.
static HANDLERS: [[OnceLock<Handler>; SLOTS]; Signal::ALL.len()] =
    [const { [const { OnceLock::new() }; SLOTS] }; Signal::ALL.len()];

/// Adds `handler` to the first free slot of `signal`.
fn add_handler(signal: Signal, handler: Handler) -> Result<(), SignalError> {
    HANDLERS[signal.index()]
        .iter()
        .find_map(|slot| slot.set(handler).ok())
        .ok_or(SignalError::Full { signal })
}

/// The handlers registered for `signal`, in registration order.
fn handlers(signal: Signal) -> impl Iterator<Item = Handler> {
    HANDLERS[signal.index()]
        .iter()
        .filter_map(|slot| slot.get().copied())
}

/// Why a handler could not be registered or installed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SignalError {
    /// Every handler slot of the signal is taken.
    #[error("no free handler slot for {signal:?} ({SLOTS} handlers registered)")]
    Full {
        /// The signal.
        signal: Signal,
    },
    /// `sigaction` failed.
    #[error("cannot install the dispatcher of {signal:?}")]
    Install {
        /// The signal.
        signal: Signal,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
}
