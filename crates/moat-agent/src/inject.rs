//! `moat trace -p PID`: the agent injected into a running process with `ptrace`. The controller
//! seizes the process's main thread, interrupts it at a safe point (below), makes it call
//! `dlopen(agent)` and then `moat_agent_start(orders)` on a scratch frame below its stack pointer,
//! puts its registers back and lets it go; the agent then runs as if preloaded. Detaching calls
//! `moat_agent_stop()` the same way, which gives every patched byte back. Other threads keep running
//! throughout (the agent's patching stops them itself where it must).
//!
//! **Safe points.** An interrupted thread may be anywhere: inside `malloc` or `free` halfway through
//! updating its per-thread cache (`tcache`, which takes no lock: re-entering it corrupts the heap,
//! seen as "double free detected in tcache 2" or "double free or corruption"), or holding its
//! arena's lock, or the loader's (`dlopen` then waits on it forever). So the thread is only used
//! where it holds none of them: when its instruction pointer is in the program's own code or in a
//! library other than the C library, the loader and the agent (none of which the allocator or the
//! loader calls back into), or when it is blocked in a sleeping system call (`clock_nanosleep`,
//! `poll`, `epoll_wait`, ...), which no allocator or loader path makes. Anywhere else (the C
//! library, `ld.so`, the agent, anonymous code such as the agent's trampolines and JIT code, the
//! vDSO) it is let run on for a fraction of a millisecond and interrupted again, for at most
//! [`SAFE_POINT_WAIT`]; then injecting fails with an error naming where the thread kept being.
//!
//! Other threads are deliberately not stopped. glibc gives each thread an arena (shared only when
//! there are more threads than arenas) and a private `tcache`; another thread inside `malloc` holds
//! at most its arena's lock, which it releases as it runs on, so the hijacked thread's `dlopen`
//! may wait for it but never finds an allocator or loader half-updated. Stopping them all could
//! instead freeze one holding a lock the injected call needs. A safe point is judged by the
//! innermost frame only: a program that calls back into its own code from inside the C library
//! with a lock held (a `qsort` comparator, a `dl_iterate_phdr` callback) could still be caught there.

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
        return Err(os_err(&format!("ptrace request {req} on {pid}")));
    }
    Ok(r)
}

/// How long [`Stopped::new`] lets a thread run on looking for a safe point.
pub const SAFE_POINT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Waits for a stop (or the end) of `pid`: its wait status, or an error if it exited.
fn wait_status(pid: i32) -> Result<i32, ControlError> {
    let mut status = 0;
    // SAFETY: `status` is a valid out-pointer.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
    if r != pid {
        return Err(os_err("waitpid"));
    }
    if libc::WIFSTOPPED(status) {
        return Ok(status);
    }
    Err(ControlError::Inject(format!(
        "process {pid} ended while being injected"
    )))
}

/// Waits for a stop (or the end) of `pid`: the stop's signal, or an error if it exited.
fn wait_stop(pid: i32) -> Result<i32, ControlError> {
    wait_status(pid).map(|s| libc::WSTOPSIG(s))
}

/// Waits for the stop a `PTRACE_INTERRUPT` asked for, passing on any signal that arrives first
/// (a signal-delivery stop comes before it and would otherwise be swallowed).
fn wait_interrupted(pid: i32) -> Result<(), ControlError> {
    loop {
        let status = wait_status(pid)?;
        if status >> 16 == libc::PTRACE_EVENT_STOP {
            return Ok(());
        }
        ptrace(libc::PTRACE_CONT, pid, 0, libc::WSTOPSIG(status) as u64)?;
    }
}

/// System calls a thread can be blocked in with no allocator or loader lock held: they sleep or
/// wait for events, and neither `malloc` nor the loader makes them. (`futex` is not one: lock waits
/// use it; nor `read`/`write`, which stdio makes holding a stream's lock.)
const SLEEPING_SYSCALLS: [i64; 14] = [
    libc::SYS_nanosleep,
    libc::SYS_clock_nanosleep,
    libc::SYS_pause,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_wait4,
    libc::SYS_waitid,
    libc::SYS_rt_sigsuspend,
    libc::SYS_accept,
    libc::SYS_accept4,
];

/// The kernel's "interrupted, to be restarted" results (`ERESTARTSYS`, `ERESTARTNOINTR`,
/// `ERESTARTNOHAND`, `ERESTART_RESTARTBLOCK`) and `EINTR`: what `rax` holds while a thread is stopped
/// inside a blocking system call.
const INTERRUPTED: [i64; 5] = [-512, -513, -514, -516, -(libc::EINTR as i64)];

/// Whether the file a code mapping comes from is one whose functions may hold the allocator's or
/// the loader's state half-updated: the C library, the loader, or the agent itself.
fn unsafe_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        "libc.so",
        "libc-",
        "ld-linux",
        "ld-",
        "libpthread",
        "libdl",
        "libmoat_agent",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// The mapping of process `pid` holding `addr`: its path ("" for anonymous memory), if any.
fn mapping_of(pid: i32, addr: u64) -> Result<Option<String>, ControlError> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .map_err(|e| ControlError::Inject(format!("/proc/{pid}/maps: {e}")))?;
    Ok(maps.lines().find_map(|line| {
        let mut fields = line.splitn(6, ' ');
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            u64::from_str_radix(start, 16).ok()?,
            u64::from_str_radix(end, 16).ok()?,
        );
        (start..end)
            .contains(&addr)
            .then(|| fields.nth(4).unwrap_or("").trim().to_string())
    }))
}

fn zeroed_regs() -> libc::user_regs_struct {
    // SAFETY: an all-zero `user_regs_struct` is a valid value (plain integers).
    unsafe { std::mem::zeroed() }
}

fn get_regs(pid: i32) -> Result<libc::user_regs_struct, ControlError> {
    let mut regs = zeroed_regs();
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
    /// Seizes process `pid`'s main thread and stops it at a safe point (see the module's notes),
    /// waiting at most [`SAFE_POINT_WAIT`] for one.
    pub fn new(pid: i32) -> Result<Stopped, ControlError> {
        ptrace(libc::PTRACE_SEIZE, pid, 0, 0)?;
        let mem = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(format!("/proc/{pid}/mem"))
            .map_err(|e| ControlError::Inject(format!("/proc/{pid}/mem: {e}")));
        let mut t = Stopped {
            pid,
            saved: zeroed_regs(),
            mem: match mem {
                Ok(m) => m,
                Err(e) => {
                    let _ = ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                    return Err(e);
                }
            },
        };
        match t.stop_safely() {
            Ok(()) => Ok(t),
            Err(e) => {
                // Stopped (or gone): let it go as it was.
                let _ = ptrace(libc::PTRACE_DETACH, pid, 0, 0);
                Err(e)
            }
        }
    }

    /// Interrupts the thread until it is at a safe point; `saved` then holds its registers.
    fn stop_safely(&mut self) -> Result<(), ControlError> {
        let start = std::time::Instant::now();
        let mut attempt = 0u64;
        loop {
            ptrace(libc::PTRACE_INTERRUPT, self.pid, 0, 0)?;
            wait_interrupted(self.pid)?;
            self.saved = get_regs(self.pid)?;
            let why = match self.unsafe_spot()? {
                None => return Ok(()),
                Some(why) => why,
            };
            if start.elapsed() > SAFE_POINT_WAIT {
                return Err(ControlError::Inject(format!(
                    "no safe point to call into process {} in {:?} ({attempt} tries): its main \
                     thread was always {why}",
                    self.pid, SAFE_POINT_WAIT
                )));
            }
            attempt += 1;
            ptrace(libc::PTRACE_CONT, self.pid, 0, 0)?;
            // Uneven pauses, so as not to fall in step with a loop of the program's.
            std::thread::sleep(std::time::Duration::from_micros(20 + attempt * 37 % 400));
        }
    }

    /// Why the stopped thread is not at a safe point to call into (`None` when it is).
    fn unsafe_spot(&mut self) -> Result<Option<String>, ControlError> {
        let r = self.saved;
        let mut syscall = r.orig_rax as i64;
        if syscall == libc::SYS_restart_syscall && r.rip >= 7 {
            // A sleep interrupted before (by an earlier injection, a stop signal) goes on as
            // `restart_syscall`; which call it restarts shows in the C library's `mov eax, NR`
            // right before the `syscall` instruction.
            if let Ok(code) = self.read(r.rip - 7, 5) {
                if code[0] == 0xb8 {
                    syscall = i64::from(u32::from_le_bytes([code[1], code[2], code[3], code[4]]));
                }
            }
        }
        if SLEEPING_SYSCALLS.contains(&syscall)
            && INTERRUPTED.contains(&(r.rax as i64))
            && r.rip >= 2
            && self.read(r.rip - 2, 2).ok().as_deref() == Some(&[0x0f, 0x05][..])
        {
            return Ok(None);
        }
        Ok(match mapping_of(self.pid, r.rip)? {
            None => Some(format!("at {:#x}, in no mapping", r.rip)),
            Some(path) if path.is_empty() || path.starts_with('[') => {
                Some(format!("at {:#x}, in anonymous code {path}", r.rip))
            }
            Some(path) if unsafe_library(&path) => Some(format!("at {:#x}, in {path}", r.rip)),
            Some(_) => None,
        })
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

/// `SIGINT` and `SIGTERM` blocked in the calling thread until dropped, which restores the thread's
/// signal mask as it was ([`block_interrupts_for_now`]).
#[derive(Debug)]
pub struct InterruptsBlocked {
    old: libc::sigset_t,
    /// Not `Send`: the mask is the blocking thread's.
    _thread: std::marker::PhantomData<*const ()>,
}

/// Blocks `SIGINT` and `SIGTERM` in the calling thread until the guard is dropped: the controller
/// notices them with [`take_interrupt`] and passes them on to the command it started (after
/// starting it, since a blocked mask is inherited).
pub fn block_interrupts_for_now() -> InterruptsBlocked {
    let set = interrupt_set();
    // SAFETY: all-zero is a valid `sigset_t` value, filled by `pthread_sigmask` below.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is initialised and `old` is writable.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) };
    InterruptsBlocked {
        old,
        _thread: std::marker::PhantomData,
    }
}

impl Drop for InterruptsBlocked {
    fn drop(&mut self) {
        // SAFETY: `self.old` is the mask `pthread_sigmask` returned, restored in the thread that
        // blocked (the guard is not `Send`).
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// The `SIGINT` or `SIGTERM` that arrived (and was blocked by [`block_interrupts`]), if any;
/// consumes it.
pub fn take_interrupt() -> Option<i32> {
    let set = interrupt_set();
    let zero = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `set` and `zero` are initialised; no siginfo is wanted.
    let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
    (sig > 0).then_some(sig)
}

/// Sends signal `sig` to process `pid` (a command the controller started); errors are ignored
/// (the process may be gone).
pub fn send_signal(pid: u32, sig: i32) {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return;
    };
    if pid > 0 {
        // SAFETY: `kill` has no memory effects; `pid` is a positive process id, never a group.
        unsafe { libc::kill(pid, sig) };
    }
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
