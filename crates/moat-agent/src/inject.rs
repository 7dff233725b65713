//! `moat trace -p PID`: the agent injected into a running process with `ptrace`. The controller
//! seizes the process's main thread, interrupts it, makes it call `dlopen(agent)` and then
//! `moat_agent_start(orders)` on a scratch frame below its stack pointer, puts its registers back
//! and lets it go; the agent then runs as if preloaded. Detaching calls `moat_agent_stop()` the
//! same way, which gives every patched byte back. Other threads keep running throughout (the
//! agent's patching stops them itself where it must).
//!
//! The interrupted thread may be anywhere, inside `malloc` holding its lock for instance; then the
//! injected `dlopen` waits on that lock forever. Debuggers that call functions in a stopped
//! process share this limit; a thread blocked in a system call (the usual case) is safe, and the
//! system call is restarted when the thread goes on.

use crate::control::ControlError;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

fn os_err(what: &str) -> ControlError {
    ControlError::Inject(format!("{what}: {}", std::io::Error::last_os_error()))
}

fn ptrace(req: libc::c_uint, pid: i32, addr: u64, data: u64) -> Result<i64, ControlError> {
    // SAFETY: the requests used here take integer arguments or a pointer to a `user_regs_struct`
    // owned by the caller for the length of the call.
    let r = unsafe {
        libc::ptrace(
            req,
            pid,
            addr as *mut libc::c_void,
            data as *mut libc::c_void,
        )
    };
    if r == -1 {
        return Err(os_err("ptrace"));
    }
    Ok(r)
}

/// Waits for a stop (or the end) of `pid`: the stop's signal, or an error if it exited.
fn wait_stop(pid: i32) -> Result<i32, ControlError> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if r != pid {
        return Err(os_err("waitpid"));
    }
    if libc::WIFSTOPPED(status) {
        return Ok(libc::WSTOPSIG(status));
    }
    Err(ControlError::Inject(format!(
        "process {pid} ended while being injected"
    )))
}

fn get_regs(pid: i32) -> Result<libc::user_regs_struct, ControlError> {
    // SAFETY: an all-zero `user_regs_struct` is a valid value (plain integers).
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    ptrace(
        libc::PTRACE_GETREGS,
        pid,
        0,
        &mut regs as *mut libc::user_regs_struct as u64,
    )?;
    Ok(regs)
}

fn set_regs(pid: i32, regs: &libc::user_regs_struct) -> Result<(), ControlError> {
    ptrace(
        libc::PTRACE_SETREGS,
        pid,
        0,
        regs as *const libc::user_regs_struct as u64,
    )
    .map(|_| ())
}

/// The stopped main thread of a process, its registers as they were.
pub struct Stopped {
    pid: i32,
    saved: libc::user_regs_struct,
    mem: std::fs::File,
}

impl Stopped {
    /// Seizes and interrupts process `pid`'s main thread.
    pub fn new(pid: i32) -> Result<Stopped, ControlError> {
        ptrace(libc::PTRACE_SEIZE, pid, 0, 0)?;
        ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0)?;
        wait_stop(pid)?;
        let saved = get_regs(pid)?;
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|e| ControlError::Inject(format!("/proc/{pid}/mem: {e}")))?;
        Ok(Stopped { pid, saved, mem })
    }

    /// Writes `bytes` into the process at `addr`.
    pub fn write(&mut self, addr: u64, bytes: &[u8]) -> Result<(), ControlError> {
        self.mem
            .seek(SeekFrom::Start(addr))
            .and_then(|_| self.mem.write_all(bytes))
            .map_err(|e| ControlError::Inject(format!("writing the process: {e}")))
    }

    /// Reads `len` bytes of the process at `addr`.
    pub fn read(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, ControlError> {
        let mut buf = vec![0u8; len];
        self.mem
            .seek(SeekFrom::Start(addr))
            .and_then(|_| self.mem.read_exact(&mut buf))
            .map_err(|e| ControlError::Inject(format!("reading the process: {e}")))?;
        Ok(buf)
    }

    /// A C string placed in scratch memory below the thread's stack (at `slot` 0, 1, ...).
    pub fn string(&mut self, slot: u64, s: &str) -> Result<u64, ControlError> {
        let addr = (self.saved.rsp - 1024 - 1024 * (slot + 1)) & !0xf;
        let mut bytes = s.as_bytes().to_vec();
        bytes.truncate(1000);
        bytes.push(0);
        self.write(addr, &bytes)?;
        Ok(addr)
    }

    /// Calls `func(args...)` in the process on a scratch frame and returns `rax`. The call
    /// returns to address 0, whose fault ends it.
    pub fn call(&mut self, func: u64, args: &[u64]) -> Result<u64, ControlError> {
        let mut r = self.saved;
        let sp = ((self.saved.rsp - 8192) & !0xf) - 8;
        self.write(sp, &0u64.to_ne_bytes())?;
        r.rsp = sp;
        r.rip = func;
        let regs = [
            &mut r.rdi, &mut r.rsi, &mut r.rdx, &mut r.rcx, &mut r.r8, &mut r.r9,
        ];
        for (reg, &v) in regs.into_iter().zip(args) {
            *reg = v;
        }
        r.rax = 0;
        // No system call restart for the call itself.
        r.orig_rax = u64::MAX;
        set_regs(self.pid, &r)?;
        ptrace(libc::PTRACE_CONT, self.pid, 0, 0)?;
        loop {
            let sig = wait_stop(self.pid)?;
            let now = get_regs(self.pid)?;
            if sig == libc::SIGSEGV && now.rip == 0 {
                return Ok(now.rax);
            }
            if sig == libc::SIGSEGV || sig == libc::SIGBUS || sig == libc::SIGILL {
                return Err(ControlError::Inject(format!(
                    "the injected call faulted (signal {sig} at {:#x})",
                    now.rip
                )));
            }
            // Another signal for the process: deliver it and wait on.
            ptrace(libc::PTRACE_CONT, self.pid, 0, sig as u64)?;
        }
    }

    /// Puts the registers back and lets the thread go on (a system call it was in restarts).
    pub fn release(self) -> Result<(), ControlError> {
        set_regs(self.pid, &self.saved)?;
        ptrace(libc::PTRACE_DETACH, self.pid, 0, 0).map(|_| ())
    }
}

/// Where `symbol` of the file `path` is in process `pid`.
pub fn symbol(pid: i32, path: &str, symbol: &str) -> Result<u64, ControlError> {
    let target = moat_attach::Target {
        path: path.to_string(),
        symbol: symbol.to_string(),
        offset: 0,
    };
    moat_attach::locate(&target, pid.unsigned_abs())
        .map(|l| l.address)
        .map_err(|e| ControlError::Inject(e.to_string()))
}

/// Loads the agent into process `pid` and starts it with the orders in file `config`.
pub fn inject(pid: i32, agent: &Path, config: &Path) -> Result<(), ControlError> {
    let dlopen = symbol(pid, "libc.so.6", "dlopen")
        .or_else(|_| symbol(pid, "libc.so.6", "__libc_dlopen_mode"))?;
    let mut t = Stopped::new(pid)?;
    let result = (|| {
        let path = t.string(0, &agent.to_string_lossy())?;
        let handle = t.call(dlopen, &[path, libc::RTLD_NOW as u64])?;
        if handle == 0 {
            return Err(ControlError::Inject(format!(
                "dlopen({}) failed in process {pid}",
                agent.display()
            )));
        }
        let start = symbol(pid, &agent.to_string_lossy(), "moat_agent_start")?;
        let orders = t.string(1, &config.to_string_lossy())?;
        let r = t.call(start, &[orders])?;
        if r as i32 != 0 {
            return Err(ControlError::Inject(format!(
                "the agent did not start in process {pid} (one already runs there?)"
            )));
        }
        Ok(())
    })();
    t.release()?;
    result
}

/// Detaches the object reporting to `report` from process `pid`: its probes' bytes restored.
pub fn eject(pid: i32, agent: &Path, report: &Path) -> Result<(), ControlError> {
    let stop = symbol(pid, &agent.to_string_lossy(), "moat_agent_stop")?;
    let mut t = Stopped::new(pid)?;
    let result = t
        .string(0, &report.to_string_lossy())
        .and_then(|r| t.call(stop, &[r]));
    t.release()?;
    result.map(|_| ())
}

fn interrupt_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill the set they are given.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        set
    }
}

/// Blocks `SIGINT` and `SIGTERM` in the calling thread (the controller's), so that `Ctrl-C` is
/// noticed by [`interrupted`] rather than killing the controller before it detaches.
pub fn block_interrupts() {
    let set = interrupt_set();
    // SAFETY: `set` is initialised; the old mask is not wanted.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
}

/// Whether `SIGINT` or `SIGTERM` arrived (and was blocked by [`block_interrupts`]); consumes it.
pub fn interrupted() -> bool {
    let set = interrupt_set();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` and `zero` are initialised; no siginfo is wanted.
    unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) > 0 }
}
