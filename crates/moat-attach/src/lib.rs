//! moat-attach: attaching verified eBPF programs to the process they run in.
//!
//! A *uprobe* runs programs when a thread reaches an address; a *uretprobe* when it returns from a
//! function. Both are made by rewriting the process's code, not by the kernel's trap:
//!
//! - **Rewrite** (the fast path): the first whole instructions covering 5 bytes at the address are
//!   replaced with a `jmp rel32` to a per-probe trampoline in code memory within reach. The
//!   trampoline saves the registers as the kernel's `struct pt_regs` (and `xmm0`-`xmm15`), calls the
//!   probe's handler, which runs every program of the probe with that `pt_regs` as its context,
//!   restores the registers, runs the displaced instructions (relocated by `iced-x86`'s block
//!   encoder) and jumps back. Patching is safe while other threads run: `int3` first (the trap
//!   handler sends a thread that meets it to the trampoline), then the other bytes, then the first,
//!   with every thread serialised in between (`membarrier`).
//! - **Trap** (the fallback): where the function is shorter than 5 bytes or a branch of the
//!   function lands inside the bytes a `jmp` would cover, only an `int3` is written; the `SIGTRAP`
//!   handler (through `moat-signal`) resumes the thread at a trampoline that displaces the same
//!   instructions a rewrite would (just the one where the code ends within 5 bytes), so that a
//!   thread still in it when the address is later rewritten resumes behind the `jmp`, not in it.
//! - **Return probes**: the entry handler swaps the return address on the stack for the return
//!   trampoline and pushes the real one on a per-thread shadow stack (64 deep, as the kernel's);
//!   the return trampoline runs the return programs and returns to the real address. A `longjmp`
//!   out of a probed function leaves a stale frame, dropped at the next return below it; a C++
//!   exception unwinding through a hijacked frame finds the trampoline as return address and
//!   terminates the process, as with the kernel's uretprobes.
//!
//! Everything fails open: a program that fails or is disabled leaves the thread as it was.
//! `unsafe` lives in `mem` (code memory, patching, fault-safe reads), `probe` (the handlers the
//! trampolines call) and `trap` (registering the `SIGTRAP` handler).

#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod codegen;
pub mod helpers;
#[expect(unsafe_code, reason = "code memory, patching code, fault-safe reads")]
mod mem;
#[expect(unsafe_code, reason = "the handlers trampolines call with raw frames")]
mod probe;
pub mod spec;
mod stack;
pub mod symbols;
pub mod syscalls;
#[expect(unsafe_code, reason = "registering the SIGTRAP handler")]
mod trap;
#[expect(unsafe_code, reason = "registering the SIGURG handler")]
mod world;

pub use mem::read_user;
pub use probe::{tls_free_guard, untraced, Hook, PtRegs};
pub use spec::{AttachPoint, SpecError, Syscall, Target};
pub use stack::ThreadStacks;
pub use symbols::{locate, locate_file_offset, Located, SymbolError};

use codegen::{DisplaceError, JMP_LEN, MAX_TRAMPOLINE};
use probe::{Probe, SyscallProbe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use thiserror::Error;

/// The windows of attached probes: `(address, window length)`, the bytes each probe's trampoline
/// runs in place of the original code (its patch, a `jmp` or an `int3`, lies at its start).
static WINDOWS: Mutex<Vec<(u64, u64)>> = Mutex::new(Vec::new());

fn windows() -> std::sync::MutexGuard<'static, Vec<(u64, u64)>> {
    WINDOWS.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a probe was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// A `jmp` to the trampoline replaced `displaced` bytes of whole instructions.
    Rewrite {
        /// Bytes of instructions moved to the trampoline.
        displaced: usize,
    },
    /// An `int3` and the `SIGTRAP` handler (the function is too short, or a branch lands in the
    /// bytes a `jmp` would cover).
    Trap,
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Method::Rewrite { displaced } => write!(f, "rewritten ({displaced} bytes displaced)"),
            Method::Trap => write!(f, "int3 trap"),
        }
    }
}

/// Which method to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// Rewrite where safe, else trap.
    #[default]
    Auto,
    /// Always trap (to measure the fallback).
    Trap,
}

/// Why a probe could not be attached.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttachError {
    /// The code at the address cannot be read.
    #[error("{address:#x}: code not readable")]
    Unreadable {
        /// The address.
        address: u64,
    },
    /// The instruction at the address cannot be moved.
    #[error("{address:#x}: cannot move the instruction there ({reason})")]
    Undisplaceable {
        /// The address.
        address: u64,
        /// Why.
        reason: String,
    },
    /// No code memory within reach, or the trampoline could not be assembled.
    #[error("{address:#x}: no trampoline ({reason})")]
    NoTrampoline {
        /// The address.
        address: u64,
        /// Why.
        reason: String,
    },
    /// The code could not be written, or the trap handler not installed.
    #[error("{address:#x}: cannot patch the code ({reason})")]
    Patch {
        /// The address.
        address: u64,
        /// Why.
        reason: String,
    },
}

/// An attached probe. Dropping it leaves it attached; [`Attachment::detach`] restores the code.
#[derive(Debug)]
pub struct Attachment {
    probe: &'static Probe,
    method: Method,
    original: Vec<u8>,
    attached: AtomicBool,
}

/// Attaches `entry` programs (run at `located.address`) and `ret` programs (run when the function
/// returns; only where the address is the function's start) to this process.
pub fn attach(
    located: &Located,
    entry: Vec<Hook>,
    ret: Vec<Hook>,
    choice: Choice,
) -> Result<Attachment, AttachError> {
    let address = located.address;
    let code = {
        let mut buf = vec![0u8; 32];
        let n = read_user(address, &mut buf);
        buf.truncate(n);
        buf
    };
    if code.is_empty() {
        return Err(AttachError::Unreadable { address });
    }
    let undisplaceable = |e: DisplaceError| AttachError::Undisplaceable {
        address,
        reason: match e {
            DisplaceError::Invalid(at) => format!("no valid instruction at {at:#x}"),
            DisplaceError::TooShort => "the code ends there".into(),
        },
    };
    // Another probe's trampoline runs the instructions at this address in place of the code (it
    // displaced them): a patch here would be missed by every thread that comes through that
    // probe, or would break its `jmp`.
    if let Some(&(other, _)) = windows()
        .iter()
        .find(|&&(a, len)| a < address && address < a + len)
    {
        return Err(AttachError::Undisplaceable {
            address,
            reason: format!(
                "inside the instructions displaced by the probe at {other:#x} (attach there, or \
                 detach it first)"
            ),
        });
    }
    // The instructions a `jmp` at the address would cover.
    let window = codegen::displace(address, &code, JMP_LEN).ok();
    // The rewrite, where the function is long enough, nothing branches into the window, and no
    // other probe's patch starts inside it (a `jmp` here would overwrite it; an `int3` leaves it
    // alone, and the trampoline's relocated copy of that `jmp` still reaches the other probe).
    let rewrite = match choice {
        Choice::Trap => None,
        Choice::Auto => window.clone().filter(|d| {
            !branches_into(located, address, d.len)
                && !windows()
                    .iter()
                    .any(|&(a, _)| address < a && a < address + d.len as u64)
        }),
    };
    let (displaced, method) = match rewrite {
        Some(d) => {
            let len = d.len;
            (d, Method::Rewrite { displaced: len })
        }
        // An `int3` probe's trampoline displaces the same whole window a rewrite would, so that
        // it resumes at the window's end: a thread still in it (running programs, preempted)
        // when the probe is detached and the address rewritten with a `jmp` must not come back
        // into the middle of the `jmp`'s bytes. Just the one instruction only where no rewrite
        // can ever cover the address (the code ends within 5 bytes).
        None => (
            match window {
                Some(d) => d,
                None => codegen::displace(address, &code, 1).map_err(undisplaceable)?,
            },
            Method::Trap,
        ),
    };
    if !ret.is_empty() && located.address != located.function {
        return Err(AttachError::Undisplaceable {
            address,
            reason: "return probes attach at a function's start".into(),
        });
    }
    let probe: &'static Probe = Box::leak(Box::new(Probe {
        address,
        function: located.function,
        entry_frame: code.first() == Some(&0x55) || code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]),
        entry,
        ret,
        enabled: AtomicBool::new(true),
        hits: probe::HitCounter::new(),
        errors: AtomicU64::new(0),
        missed: AtomicU64::new(0),
    }));
    if !probe.ret.is_empty() && probe::return_trampoline(address).is_none() {
        return Err(AttachError::NoTrampoline {
            address,
            reason: "no code memory for the return trampoline".into(),
        });
    }
    let resume = address + displaced.len as u64;
    let handler = probe::on_entry as *const () as u64;
    let interior = std::cell::RefCell::new(Vec::new());
    let tramp = mem::place_code(address, MAX_TRAMPOLINE, |at| {
        let (code, inside) = codegen::trampoline(
            at,
            handler,
            probe as *const Probe as u64,
            &displaced.instrs,
            resume,
        )
        .ok()?;
        *interior.borrow_mut() = inside;
        Some(code)
    })
    .ok_or_else(|| AttachError::NoTrampoline {
        address,
        reason: "no code memory within 2 GiB, or the instructions do not relocate".into(),
    })?;
    if !trap::route(address, tramp) {
        return Err(AttachError::Patch {
            address,
            reason: "the SIGTRAP handler cannot be installed or its table is full".into(),
        });
    }
    let patch: Vec<u8> = match method {
        Method::Trap => vec![0xcc],
        Method::Rewrite { .. } => codegen::jmp_rel32(address, tramp)
            .ok_or_else(|| AttachError::NoTrampoline {
                address,
                reason: "trampoline out of reach".into(),
            })?
            .to_vec(),
    };
    let original = code[..patch.len()].to_vec();
    // Threads stopped between displaced instructions go on in the trampoline's copy of them.
    let redirects: Vec<(u64, u64)> = displaced
        .instrs
        .iter()
        .skip(1)
        .map(|i| i.ip())
        .zip(interior.into_inner())
        .collect();
    let mut written = false;
    let mut patch_now = || written = mem::patch_code(address, &patch);
    // A single `int3` byte needs no stop: a thread never stands inside it.
    let (method, patch_len) = if redirects.is_empty() || method == Method::Trap {
        patch_now();
        (method, patch.len())
    } else if world::stopped(&redirects, patch_now) {
        (method, patch.len())
    } else {
        // Other threads could not be stopped: the single-byte trap needs no stop.
        written = mem::patch_code(address, &[0xcc]);
        (Method::Trap, 1)
    };
    if !written {
        return Err(AttachError::Patch {
            address,
            reason: "mprotect refused".into(),
        });
    }
    let original = original[..patch_len].to_vec();
    windows().push((address, displaced.len as u64));
    Ok(Attachment {
        probe,
        method,
        original,
        attached: AtomicBool::new(true),
    })
}

/// Whether a direct branch of the located function lands inside `(address, address + len)`.
fn branches_into(located: &Located, address: u64, len: usize) -> bool {
    if located.size == 0 {
        return false;
    }
    let size = usize::try_from(located.size).unwrap_or(0).min(1 << 20);
    match mem::read_code(located.function, size) {
        Some(code) => codegen::branch_into(located.function, &code, address, address + len as u64),
        None => true,
    }
}

impl Attachment {
    /// How the probe was made.
    pub fn method(&self) -> Method {
        self.method
    }

    /// The probed address.
    pub fn address(&self) -> u64 {
        self.probe.address
    }

    /// Program runs so far.
    pub fn hits(&self) -> u64 {
        self.probe.hits.get()
    }

    /// Runs that failed (the program refused at run time, faulted, or was disabled).
    pub fn errors(&self) -> u64 {
        self.probe.errors.load(Ordering::Relaxed)
    }

    /// Hits skipped (nested in another probe on the same thread, or too deep for return probes).
    pub fn missed(&self) -> u64 {
        self.probe.missed.load(Ordering::Relaxed)
    }

    /// Detaches: the probed code gets its original bytes back (the same `int3`-first protocol),
    /// and the probe's programs stop running. Threads already in the trampoline, or holding a
    /// hijacked return, finish normally. `false` if the code could not be written.
    pub fn detach(&self) -> bool {
        if !self.attached.swap(false, Ordering::AcqRel) {
            return true;
        }
        let ok = mem::patch_code(self.probe.address, &self.original);
        self.probe.enabled.store(false, Ordering::Release);
        let mut w = windows();
        if let Some(i) = w.iter().position(|&(a, _)| a == self.probe.address) {
            w.remove(i);
        }
        ok
    }
}

/// Programs for system call tracepoints, by system call number.
#[derive(Debug, Default)]
pub struct SyscallHooks {
    /// `tracepoint/syscalls/sys_enter_NAME` programs.
    pub enter: Vec<(u32, Hook)>,
    /// `tracepoint/syscalls/sys_exit_NAME` programs.
    pub exit: Vec<(u32, Hook)>,
    /// `raw_tracepoint/sys_enter` programs (every system call).
    pub raw_enter: Vec<Hook>,
    /// `raw_tracepoint/sys_exit` programs.
    pub raw_exit: Vec<Hook>,
}

/// System calls whose sites are never rewritten: the new thread or process of `clone`, `clone3`,
/// `fork` and `vfork` starts on another stack (or shares this one), `rt_sigreturn` and the exits
/// never return.
const UNHOOKED: [u32; 7] = [15, 56, 57, 58, 60, 231, 435];

/// Rewritten system call sites with their programs.
#[derive(Debug)]
pub struct SyscallAttachment {
    sites: Vec<(&'static SyscallProbe, Vec<u8>)>,
    attached: AtomicBool,
}

/// Attaches system call programs by rewriting the system call sites of the files named (a path or
/// a file name, as for uprobes: typically `libc.so.6` and the program itself): each `mov eax, NR`
/// … `syscall` sequence (no branch in between or into it) for a system call that has programs
/// becomes a `jmp` to a trampoline that runs the `sys_enter` programs just before the `syscall`
/// and the `sys_exit` programs just after it. System calls made elsewhere (a site whose number is
/// not an immediate, the vDSO, other libraries) are not seen.
pub fn attach_syscalls(
    hooks: SyscallHooks,
    files: &[&str],
) -> Result<SyscallAttachment, AttachError> {
    let wants = |nr: u32| {
        !UNHOOKED.contains(&nr)
            && (!hooks.raw_enter.is_empty()
                || !hooks.raw_exit.is_empty()
                || hooks.enter.iter().chain(&hooks.exit).any(|(n, _)| *n == nr))
    };
    let pick = |list: &[(u32, Hook)], nr: u32| -> Vec<Hook> {
        list.iter()
            .filter(|(n, _)| *n == nr)
            .map(|(_, h)| h.clone())
            .collect()
    };
    let mut sites = Vec::new();
    let pid = std::process::id();
    for file in files {
        for (start, end) in symbols::exec_mappings(pid, file) {
            let Some(code) = mem::read_code(start, (end - start) as usize) else {
                continue;
            };
            for site in codegen::syscall_sites(start, &code) {
                if !wants(site.nr) {
                    continue;
                }
                let address = site.displaced.instrs[0].ip();
                let probe: &'static SyscallProbe = Box::leak(Box::new(SyscallProbe {
                    site: address,
                    address: site.displaced.instrs[site.displaced.instrs.len() - 1].ip(),
                    nr: site.nr,
                    enter: pick(&hooks.enter, site.nr),
                    exit: pick(&hooks.exit, site.nr),
                    raw_enter: hooks.raw_enter.clone(),
                    raw_exit: hooks.raw_exit.clone(),
                    enabled: AtomicBool::new(true),
                    hits: probe::HitCounter::new(),
                    errors: AtomicU64::new(0),
                }));
                let resume = address + site.displaced.len as u64;
                let enter = (!probe.enter.is_empty() || !probe.raw_enter.is_empty())
                    .then_some(probe::on_sys_enter as *const () as u64);
                let exit = (!probe.exit.is_empty() || !probe.raw_exit.is_empty())
                    .then_some(probe::on_sys_exit as *const () as u64);
                let interior = std::cell::RefCell::new(Vec::new());
                let tramp = mem::place_code(address, 2 * MAX_TRAMPOLINE, |at| {
                    let (code, inside) = codegen::syscall_trampoline(
                        at,
                        enter,
                        exit,
                        probe as *const SyscallProbe as u64,
                        &site.displaced.instrs,
                        resume,
                    )?;
                    *interior.borrow_mut() = inside;
                    Some(code)
                });
                let Some(tramp) = tramp else { continue };
                let Some(jmp) = codegen::jmp_rel32(address, tramp) else {
                    continue;
                };
                if !trap::route(address, tramp) {
                    continue;
                }
                let Some(original) = mem::read_code(address, JMP_LEN) else {
                    continue;
                };
                let redirects: Vec<(u64, u64)> = site
                    .displaced
                    .instrs
                    .iter()
                    .skip(1)
                    .map(|i| i.ip())
                    .zip(interior.into_inner())
                    .collect();
                let mut written = false;
                let stopped = world::stopped(&redirects, || {
                    written = mem::patch_code(address, &jmp);
                });
                if stopped && written {
                    sites.push((probe, original));
                }
            }
        }
    }
    Ok(SyscallAttachment {
        sites,
        attached: AtomicBool::new(true),
    })
}

impl SyscallAttachment {
    /// The rewritten sites: `(address of the syscall instruction, system call number)`.
    pub fn sites(&self) -> Vec<(u64, u32)> {
        self.sites.iter().map(|(p, _)| (p.address, p.nr)).collect()
    }

    /// Program runs so far.
    pub fn hits(&self) -> u64 {
        self.sites.iter().map(|(p, _)| p.hits.get()).sum()
    }

    /// Failed runs so far.
    pub fn errors(&self) -> u64 {
        self.sites
            .iter()
            .map(|(p, _)| p.errors.load(Ordering::Relaxed))
            .sum()
    }

    /// Restores every rewritten site; `false` if any could not be written.
    pub fn detach(&self) -> bool {
        if !self.attached.swap(false, Ordering::AcqRel) {
            return true;
        }
        let mut ok = true;
        for (probe, original) in &self.sites {
            probe.enabled.store(false, Ordering::Release);
            ok &= mem::patch_code(probe.site, original);
        }
        ok
    }
}
