//! Everything unsafe of the crate: installing the dispatcher with `sigaction`, the dispatcher itself
//! (its PKRU-first entry, the kernel's `siginfo` and `ucontext`) and passing signals on to the
//! host's handlers.

use crate::{add_handler, handlers, Disposition, Handler, Signal, SignalContext, SignalError};
use std::cell::Cell;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// The handlers that were in place of the dispatcher, oldest first: the host's when moat installed
/// it, then each one that replaced it, as [`ensure_installed`] found them. The last gets what no
/// registered handler claims; a call into the dispatcher from the one before last goes to the one
/// before it, and so on (see [`deliver`]).
struct Chain {
    before: Vec<libc::sigaction>,
}

/// The current [`Chain`] of each signal (null: none yet). Published chains are never freed: a
/// dispatcher may be reading one at any time.
static CHAINS: [AtomicPtr<Chain>; Signal::ALL.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; Signal::ALL.len()];

/// Serialises installations (never taken by the dispatcher).
static LOCK: Mutex<()> = Mutex::new(());

/// Registers `handler` for `signal` and installs the signal's dispatcher if it is not yet.
///
/// From then on, every `signal` the process receives is offered to `handler` (after the handlers
/// registered before it), on the thread it interrupts, until one of them claims it. Handlers stay
/// registered for the life of the process. Fails with [`SignalError::Full`] when [`crate::SLOTS`]
/// handlers are registered for the signal, with [`SignalError::Install`] when `sigaction` fails
/// (the handler is registered, and the next [`ensure_installed`] tries again).
///
/// # Safety
/// `handler` runs inside a signal handler, at any instruction of whatever thread the signal
/// interrupts (host code, a helper, generated code), possibly while another signal is handled on the
/// same thread:
/// - it must be async-signal-safe (see [`Handler`]);
/// - it must answer [`Disposition::NotMine`] for a signal that is not its own, and leave the
///   registers unchanged then;
/// - when it answers [`Disposition::Handled`], the registers it leaves must be a state the
///   interrupted code can go on from: typically a landing or recovery address that code prepared
///   for this, with the register values it expects there.
pub unsafe fn register(signal: Signal, handler: Handler) -> Result<(), SignalError> {
    add_handler(signal, handler)?;
    install(signal)
}

/// Installs the dispatcher again for every signal with registered handlers whose dispatcher someone
/// has replaced since (or could not be installed), and chains to the replacing handler from then on
/// (the crate's documentation has the contract). Costs one `sigaction` query per such signal.
pub fn ensure_installed() -> Result<(), SignalError> {
    for signal in Signal::ALL {
        if handlers(signal).next().is_some() {
            install(signal)?;
        }
    }
    Ok(())
}

/// Installs the dispatcher of `signal` unless it is in place, recording the handler it replaces.
fn install(signal: Signal) -> Result<(), SignalError> {
    let _guard = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let current = action(signal, None)?;
    if is_ours(&current) {
        return Ok(());
    }
    let base = chain(signal);
    // Published before the dispatcher is installed, so that it never runs without it.
    publish(signal, &base, &current);
    let replaced = action(signal, Some(&dispatcher_action()))?;
    if !same(&replaced, &current) {
        // Someone installed a handler between the query and ours.
        publish(signal, &base, &replaced);
    }
    Ok(())
}

/// A copy of the current chain of `signal`.
fn chain(signal: Signal) -> Vec<libc::sigaction> {
    let chain = CHAINS[signal.index()].load(Ordering::Acquire);
    // SAFETY: a published chain is never freed or changed.
    unsafe { chain.as_ref() }.map_or_else(Vec::new, |c| c.before.clone())
}

/// Publishes `base` followed by `replaced` as the chain of `signal`. A replacing handler that is
/// already in the chain (a host that restored a handler it had saved) cuts the chain back to it.
fn publish(signal: Signal, base: &[libc::sigaction], replaced: &libc::sigaction) {
    let mut before = base.to_vec();
    if !is_ours(replaced) {
        match before.iter().position(|a| same(a, replaced)) {
            Some(i) => before.truncate(i + 1),
            None => before.push(*replaced),
        }
    }
    let chain = Box::into_raw(Box::new(Chain { before }));
    CHAINS[signal.index()].store(chain, Ordering::Release);
}

/// Sets the action of `signal` to `new` if given; returns the action before.
fn action(signal: Signal, new: Option<&libc::sigaction>) -> Result<libc::sigaction, SignalError> {
    // SAFETY: a zeroed `sigaction` is a valid value ("SIG_DFL, no flags, empty mask") for the
    // kernel to overwrite; `sigaction` reads `new` (null or a valid action) and writes `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        let new = new.map_or(std::ptr::null(), |n| n as *const libc::sigaction);
        if libc::sigaction(signal.number(), new, &mut old) != 0 {
            return Err(SignalError::Install {
                signal,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(old)
    }
}

/// Whether two actions are the same handler, called the same way.
fn same(a: &libc::sigaction, b: &libc::sigaction) -> bool {
    a.sa_sigaction == b.sa_sigaction
        && a.sa_flags & libc::SA_SIGINFO == b.sa_flags & libc::SA_SIGINFO
}

/// Whether `action` is the dispatcher.
fn is_ours(action: &libc::sigaction) -> bool {
    action.sa_sigaction == dispatch as *const () as usize
        || action.sa_sigaction == moat_signal_entry_pkru as *const () as usize
}

/// The dispatcher's action: its entry, with `siginfo`, restarting interrupted system calls (the timer
/// signal must not make the host's calls fail with `EINTR`), on the interrupted stack.
fn dispatcher_action() -> libc::sigaction {
    let entry = if protection_keys() {
        moat_signal_entry_pkru as *const () as usize
    } else {
        dispatch as *const () as usize
    };
    // SAFETY: as in `action`: a zeroed `sigaction` is valid, filled in here; `sigemptyset` writes
    // the live mask.
    unsafe {
        let mut new: libc::sigaction = std::mem::zeroed();
        new.sa_sigaction = entry;
        new.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut new.sa_mask);
        new
    }
}

/// Whether the CPU and kernel have protection keys enabled (CPUID.7.0:ECX.OSPKE): then PKRU exists
/// and may deny memory when a signal arrives.
fn protection_keys() -> bool {
    static PKU: OnceLock<bool> = OnceLock::new();
    *PKU.get_or_init(|| {
        let leaf0 = std::arch::x86_64::__cpuid(0);
        leaf0.eax >= 7 && std::arch::x86_64::__cpuid_count(7, 0).ecx & (1 << 4) != 0
    })
}

std::arch::global_asm!(
    ".pushsection .text.moat_signal_entry_pkru,\"ax\",@progbits",
    ".p2align 4",
    ".hidden moat_signal_entry_pkru",
    ".globl moat_signal_entry_pkru",
    "moat_signal_entry_pkru:",
    // PKRU = 0 (every key) without touching memory: the stack may be one only the interrupted
    // PKRU allowed. rdx (the ucontext) survives in r8; rdi and rsi are untouched.
    "mov r8, rdx",
    "xor eax, eax",
    "xor ecx, ecx",
    "xor edx, edx",
    ".byte 0x0f, 0x01, 0xef", // wrpkru
    "mov rdx, r8",
    "jmp {dispatch}",
    ".popsection",
    dispatch = sym dispatch,
);

extern "C" {
    /// The dispatcher's entry where the CPU has protection keys: sets PKRU to allow every key, then
    /// jumps to [`dispatch`] with the same arguments.
    fn moat_signal_entry_pkru(
        sig: libc::c_int,
        info: *mut libc::siginfo_t,
        uctx: *mut libc::c_void,
    );
}

/// The dispatcher of every signal moat handles (installed with `SA_SIGINFO`).
extern "C" fn dispatch(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: this thread's `errno`, saved and restored around the handler so that the interrupted
    // code does not see it change.
    let errno = unsafe { *libc::__errno_location() };
    if let Some(signal) = Signal::from_number(sig) {
        // SAFETY: the arguments are the kernel's, or those a host handler got from it and passes on.
        unsafe { deliver(signal, info, uctx) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

thread_local! {
    /// The signal this thread's dispatcher is passing on to a host handler: its `siginfo`, the
    /// dispatcher's stack pointer and the chain level it passes it at ([`deliver`]).
    static PASSING: Cell<(usize, usize, usize)> = const { Cell::new((0, 0, 0)) };
}

/// Offers `signal` to the registered handlers, then passes it on.
///
/// A call with the `siginfo` of a signal this thread is passing on, from deeper on the same stack,
/// is that host handler calling the one it replaced: the dispatcher. Then the signal goes on to the
/// handler before that one in the chain (its *level* is one more), not to the registered handlers
/// again, nor round in a circle. (A host handler that left with `longjmp` leaves `PASSING` behind:
/// a new signal from the same place has its `siginfo` at the same address but arrives at the same
/// stack depth, not deeper.)
///
/// # Safety
/// `info` and `uctx` must be null or the valid `siginfo` and `ucontext` of `signal`.
unsafe fn deliver(signal: Signal, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let sp: usize;
    // SAFETY: reads the stack pointer.
    unsafe {
        std::arch::asm!("mov {}, rsp", out(reg) sp, options(nomem, nostack, preserves_flags));
    }
    let passing = PASSING.get();
    let level = if !info.is_null() && info as usize == passing.0 && sp < passing.1 {
        passing.2 + 1
    } else {
        0
    };
    // SAFETY: the caller guarantees `info` is valid if not null.
    let code = unsafe { info.as_ref() }.map_or(0, |i| i.si_code);
    if level == 0 && !uctx.is_null() {
        let address = if signal.forced(code) {
            // SAFETY: a signal raised by the CPU has its address in `si_addr`.
            unsafe { (*info).si_addr() as u64 }
        } else {
            0
        };
        // SAFETY: the caller guarantees `uctx` is the valid ucontext of this signal, not otherwise
        // borrowed while the handlers run.
        let uc = unsafe { &mut *(uctx as *mut libc::ucontext_t) };
        let mut cx = SignalContext::new(signal, code, address, &mut uc.uc_mcontext.gregs);
        if handlers(signal).any(|h| h(&mut cx) == Disposition::Handled) {
            return;
        }
    }
    PASSING.set((info as usize, sp, level));
    // SAFETY: as guaranteed by the caller.
    unsafe { pass_on(signal, level, code, info, uctx) };
    PASSING.set(passing);
}

/// Passes `signal` to the handler `level` places from the end of its chain, or takes the default
/// action.
///
/// # Safety
/// As for [`deliver`].
unsafe fn pass_on(
    signal: Signal,
    level: usize,
    code: libc::c_int,
    info: *mut libc::siginfo_t,
    uctx: *mut libc::c_void,
) {
    let chain = CHAINS[signal.index()].load(Ordering::Acquire);
    // SAFETY: a published chain is never freed or changed.
    let before = unsafe { chain.as_ref() }.map_or(&[][..], |c| &c.before[..]);
    let target = before
        .len()
        .checked_sub(level + 1)
        .and_then(|i| before.get(i));
    match target.map(|a| (a, a.sa_sigaction)) {
        Some((_, libc::SIG_IGN)) if !signal.forced(code) => {}
        Some((a, handler)) if handler != libc::SIG_DFL && handler != libc::SIG_IGN => {
            // SAFETY: the mask is a valid signal set; blocking signals is async-signal-safe (the
            // kernel restores the interrupted mask when the signal handler returns).
            unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &a.sa_mask, std::ptr::null_mut()) };
            if a.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: installed with SA_SIGINFO, the handler has the three-argument signature;
                // it gets the arguments the kernel gave us.
                let f = unsafe {
                    std::mem::transmute::<
                        usize,
                        extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
                    >(handler)
                };
                f(signal.number(), info, uctx);
            } else {
                // SAFETY: without SA_SIGINFO the handler takes the signal number only.
                let f =
                    unsafe { std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(handler) };
                f(signal.number());
            }
        }
        _ => default_action(signal, code),
    }
}

/// What the process would have done with `signal` without any handler.
fn default_action(signal: Signal, code: libc::c_int) {
    if signal.ignored_by_default() {
        return;
    }
    // SAFETY: `sigaction` and `raise` are async-signal-safe; the action is the default one. A fault
    // recurs when the handler returns and then kills the process (or dumps core) as it would have;
    // any other signal is raised again, delivered as soon as the handler returns.
    unsafe {
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        libc::sigemptyset(&mut default.sa_mask);
        libc::sigaction(signal.number(), &default, std::ptr::null_mut());
        if !signal.recurs(code) {
            libc::raise(signal.number());
        }
    }
}
