//! Hardware faults in generated code end the run, not the process.
//!
//! A memory access the verifier proved safe runs without a software check. If the verifier was
//! wrong, the hardware is the last line: under `mpk` a protection-key fault (`SEGV_PKUERR`) on memory
//! outside the domain, anywhere a page fault on unmapped or protected memory. This module's
//! `SIGSEGV` handler recognises a fault whose instruction lies in the code of a program this thread
//! is running ([`Scope`]) and resumes that code at its *fault landing*, which records the fault in the
//! run context and unwinds to the entry trampoline like any other run-time error: the run fails with
//! `RunErrorKind::MemoryFault` naming the instruction, and the host goes on. Every other `SIGSEGV`
//! is passed to the handler that was installed before (a host's own, or the default action).
//!
//! The handler is installed once, by the first compilation ([`install`]). A host that installs its
//! own `SIGSEGV` handler *afterwards* must chain to the previous one for this to keep working.
//! It does not run on an alternate signal stack: while confined code runs, PKRU denies the host's
//! memory, so the kernel writes the signal frame onto the run's own native stack, and the handler's
//! first instructions set PKRU to allow every key (the kernel restores the interrupted value on
//! return).

use crate::run::ERR_FAULT;
use std::cell::Cell;
use std::sync::{Once, OnceLock};

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

/// The handler that was installed before ours.
struct Previous(libc::sigaction);

// SAFETY: a `sigaction` is plain data (a handler address, a mask and flags), written once before
// any reader can see it.
unsafe impl Sync for Previous {}
// SAFETY: as above.
unsafe impl Send for Previous {}

static PREVIOUS: OnceLock<Previous> = OnceLock::new();

std::arch::global_asm!(
    ".pushsection .text.moat_jit_fault_entry_pkru,\"ax\",@progbits",
    ".p2align 4",
    ".hidden moat_jit_fault_entry_pkru",
    ".globl moat_jit_fault_entry_pkru",
    "moat_jit_fault_entry_pkru:",
    // PKRU = 0 (every key) without touching memory: the stack may be one only the interrupted
    // PKRU allowed. rdx (the ucontext) survives in r8.
    "mov r8, rdx",
    "xor eax, eax",
    "xor ecx, ecx",
    "xor edx, edx",
    ".byte 0x0f, 0x01, 0xef",
    "mov rdx, r8",
    "jmp {handle}",
    ".popsection",
    handle = sym handle,
);

extern "C" {
    fn moat_jit_fault_entry_pkru(
        sig: libc::c_int,
        info: *mut libc::siginfo_t,
        uctx: *mut libc::c_void,
    );
}

/// Installs the handler (once per process).
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let entry = if crate::run::pkru::available() {
            moat_jit_fault_entry_pkru as *const () as usize
        } else {
            handle as *const () as usize
        };
        // SAFETY: a zeroed `sigaction` is a valid "no handler, no flags, empty mask" value that we
        // fill in; `sigaction` only reads `new` and writes `old`, both live locals.
        unsafe {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = entry;
            new.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut new.sa_mask);
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGSEGV, &new, &mut old) == 0 {
                let _ = PREVIOUS.set(Previous(old));
            }
        }
    });
}

/// The `SIGSEGV` handler.
extern "C" fn handle(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo and ucontext for a SA_SIGINFO handler; the thread
    // locals read are const-initialised cells (no lazy initialisation, no allocation).
    unsafe {
        let uc = &mut *(uctx as *mut libc::ucontext_t);
        let gregs = &mut uc.uc_mcontext.gregs;
        let rip = gregs[libc::REG_RIP as usize] as u64;
        if let Some(landing) = landing_for(rip) {
            let code = (*info).si_code as u32 as u64;
            gregs[libc::REG_R11 as usize] = rip as i64;
            gregs[libc::REG_R10 as usize] = ((ERR_FAULT << 32) | code) as i64;
            gregs[libc::REG_R9 as usize] = (*info).si_addr() as i64;
            gregs[libc::REG_RIP as usize] = landing as i64;
            return;
        }
        chain(sig, info, uctx);
    }
}

/// Passes a fault that is not ours to the previous handler, or to the default action.
///
/// # Safety
/// Only from the signal handler, with the kernel's arguments.
unsafe fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, uctx: *mut libc::c_void) {
    let previous = PREVIOUS.get().map(|p| p.0);
    match previous {
        Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
            if p.sa_flags & libc::SA_SIGINFO != 0 {
                // SAFETY: with SA_SIGINFO the handler has the three-argument signature.
                let f = unsafe {
                    std::mem::transmute::<
                        usize,
                        extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void),
                    >(p.sa_sigaction)
                };
                f(sig, info, uctx);
            } else {
                // SAFETY: without SA_SIGINFO the handler takes the signal number only.
                let f = unsafe {
                    std::mem::transmute::<usize, extern "C" fn(libc::c_int)>(p.sa_sigaction)
                };
                f(sig);
            }
        }
        _ => {
            // SAFETY: restoring the default action; a synchronous fault then recurs on return and
            // terminates the process as it would have without us; a sent signal is raised again.
            unsafe {
                libc::signal(sig, libc::SIG_DFL);
                if (*info).si_code <= 0 {
                    libc::raise(sig);
                }
            }
        }
    }
}
