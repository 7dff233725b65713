//! What a registered handler sees of a signal: its number, `si_code` and fault address, and the
//! interrupted thread's general registers, which it may change before the thread resumes.

use crate::Signal;

/// An x86-64 register of the interrupted thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[expect(missing_docs, reason = "the registers' own names")]
pub enum Reg {
    Rax,
    Rbx,
    Rcx,
    Rdx,
    Rsi,
    Rdi,
    Rbp,
    Rsp,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
    /// The instruction pointer: the faulting instruction for a fault, the one after `int3` for a
    /// breakpoint, the next to run for a signal sent by a process.
    Rip,
    /// The flags (`RFLAGS`).
    Rflags,
}

impl Reg {
    /// The register's index in the kernel's `mcontext_t.gregs`.
    fn index(self) -> usize {
        let index = match self {
            Reg::Rax => libc::REG_RAX,
            Reg::Rbx => libc::REG_RBX,
            Reg::Rcx => libc::REG_RCX,
            Reg::Rdx => libc::REG_RDX,
            Reg::Rsi => libc::REG_RSI,
            Reg::Rdi => libc::REG_RDI,
            Reg::Rbp => libc::REG_RBP,
            Reg::Rsp => libc::REG_RSP,
            Reg::R8 => libc::REG_R8,
            Reg::R9 => libc::REG_R9,
            Reg::R10 => libc::REG_R10,
            Reg::R11 => libc::REG_R11,
            Reg::R12 => libc::REG_R12,
            Reg::R13 => libc::REG_R13,
            Reg::R14 => libc::REG_R14,
            Reg::R15 => libc::REG_R15,
            Reg::Rip => libc::REG_RIP,
            Reg::Rflags => libc::REG_EFL,
        };
        index.unsigned_abs() as usize
    }
}

/// A signal being handled, as a registered [`crate::Handler`] sees it.
pub struct SignalContext<'a> {
    signal: Signal,
    code: libc::c_int,
    address: u64,
    gregs: &'a mut [libc::greg_t; 23],
}

impl<'a> SignalContext<'a> {
    /// The context of `signal` with `si_code` `code`, fault address `address` and the interrupted
    /// thread's registers `gregs`.
    pub(crate) fn new(
        signal: Signal,
        code: libc::c_int,
        address: u64,
        gregs: &'a mut [libc::greg_t; 23],
    ) -> SignalContext<'a> {
        SignalContext {
            signal,
            code,
            address,
            gregs,
        }
    }

    /// The signal.
    pub fn signal(&self) -> Signal {
        self.signal
    }

    /// Its `si_code`: why the kernel raised it (`SEGV_MAPERR`, `SEGV_PKUERR`, `BUS_ADRERR`,
    /// `SI_KERNEL` for `int3`, …; all > 0), or who sent it (`SI_USER`, `SI_TKILL`, `SI_TIMER`, …;
    /// all ≤ 0).
    pub fn code(&self) -> libc::c_int {
        self.code
    }

    /// The address the kernel reports for a fault (`si_addr`: the memory accessed, for `SIGSEGV` and
    /// `SIGBUS`); 0 for a signal sent by a process or a timer.
    pub fn fault_address(&self) -> u64 {
        self.address
    }

    /// The value of `reg` in the interrupted thread.
    pub fn reg(&self, reg: Reg) -> u64 {
        self.gregs[reg.index()] as u64
    }

    /// Sets `reg` of the interrupted thread to `value` when it resumes (if the handler returns
    /// [`crate::Disposition::Handled`]). What the thread may be resumed with is the handler's
    /// contract ([`crate::register`]).
    pub fn set_reg(&mut self, reg: Reg, value: u64) {
        self.gregs[reg.index()] = value as i64;
    }
}
